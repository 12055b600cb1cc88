package io.guestmem.gmem;

import io.guestmem.mmu.Mappability;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.kvm.KvmAvailable;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvmapi.KvmIoctls;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.probe.GuestMemfdFiles;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The conversion state machine over a real KVM guest_memfd (MMAP|INIT_SHARED) with the region's syscalls
 * (host-mapping check, zaps, hole punches, the notifier), checked against the kernel's own view (pagemap of
 * the host mapping), and the guest_memfd facts of this kernel through the region. The state machine alone,
 * without a guest_memfd: {@link PageStatesTest}.
 */
class GuestMemfdRegionTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static KvmVm vm;

    @BeforeAll
    static void openVm() {
        KvmAvailable.assume();
        vm = KvmVm.open();
        boolean ok = vm.capabilities().guestMemfdMmapShared();
        if (!ok) System.out.println("SKIP: this KVM has no guest_memfd MMAP|INIT_SHARED: " + vm.capabilities());
        Assumptions.assumeTrue(ok, "guest_memfd MMAP|INIT_SHARED not offered");
    }

    @AfterAll
    static void closeVm() {
        if (vm != null) vm.close();
    }

    static GuestMemfdRegion region(int pages) {
        return region(pages, null);
    }

    static GuestMemfdRegion region(int pages, MmuNotifier notifier) {
        GuestMemfdRegion r = GuestMemfdRegion.create(vm, pages * PAGE, notifier);
        assertEquals(GuestMemfdBacking.GUEST_MEMFD, r.backing(), "this machine gives a real MMAP|INIT_SHARED guest_memfd");
        assertEquals(KvmIoctls.GUEST_MEMFD_FLAG_MMAP | KvmIoctls.GUEST_MEMFD_FLAG_INIT_SHARED, r.guestMemfd().flags());
        return r;
    }

    @Test
    void hostMappedPageBlocksToPrivateWithEagainAndItsOffset() {
        try (GuestMemfdRegion r = region(8)) {
            for (int p = 0; p < 8; p++) assertEquals(Mappability.ALL, r.pageStates().mappability(p));
            assertEquals(-1, r.firstHostMapped(0, 8 * PAGE), "nothing touched yet: pagemap shows no page");
            r.putLong(3 * PAGE + 16, 0x1122334455667788L);
            r.putLong(5 * PAGE, 42);
            assertEquals(3 * PAGE, r.firstHostMapped(0, 8 * PAGE));
            assertTrue(r.hostPagemapEntry(3 * PAGE).present(), "the kernel maps the touched page");

            ConversionException e = assertThrows(ConversionException.class, () -> r.toPrivate(0, 8 * PAGE));
            System.out.println("toPrivate while host-mapped: " + e.getMessage());
            assertEquals(Errno.EAGAIN, e.errno());
            assertEquals(3 * PAGE, e.errorOffset(), "the offset of the first page still mapped");
            for (int p = 0; p < 8; p++) assertEquals(Mappability.ALL, r.pageStates().mappability(p), "nothing changed");
            // A range that starts after the first mapped page reports the next one.
            assertEquals(5 * PAGE, assertThrows(ConversionException.class, () -> r.toPrivate(4 * PAGE, 4 * PAGE)).errorOffset());
            // A range with no mapped page converts.
            assertTrue(r.toPrivate(6 * PAGE, 2 * PAGE).isComplete());

            r.zapHostMapping(0, 6 * PAGE);
            assertEquals(-1, r.firstHostMapped(0, 8 * PAGE), "after the zap pagemap shows no page present");
            Conversion c = r.toPrivate(0, 8 * PAGE);
            assertEquals(new Conversion(0, 8 * PAGE, Mappability.GUEST, 8, 0, -1), c);
            for (int p = 0; p < 8; p++) assertEquals(Mappability.GUEST, r.pageStates().mappability(p));

            HostAccessRefusedException h = assertThrows(HostAccessRefusedException.class, () -> r.getLong(3 * PAGE + 16));
            System.out.println("host access to a private page: " + h.getMessage());
            assertEquals(Errno.EFAULT, h.errno());
            assertEquals(3 * PAGE, h.offset());
            assertEquals(Mappability.GUEST, h.mappability());
            assertThrows(HostAccessRefusedException.class, () -> r.write(2 * PAGE - 4, new byte[8], 0, 8));
            assertEquals(-1, r.firstHostMapped(0, 8 * PAGE), "refused accesses did not fault anything in");
            assertFalse(r.pageStates().tryGet(3, false), "follow_pfn without FOLL_GUEST gets no private page");
            assertTrue(r.pageStates().tryGet(3, true), "with FOLL_GUEST it does");
            r.pageStates().put(3, true);

            // Back to shared: the contents survived (DONTNEED on a shared mapping keeps the file's pages).
            assertTrue(r.toShared(0, 8 * PAGE).isComplete());
            assertEquals(0x1122334455667788L, r.getLong(3 * PAGE + 16));
            assertEquals(42, r.getLong(5 * PAGE));
        }
    }

    @Test
    void heldReferenceDefersConversionUntilTheFinalPut() throws Exception {
        try (GuestMemfdRegion r = region(4)) {
            List<String> completions = new CopyOnWriteArrayList<>();
            r.addFinalPutListener((reg, off, now) -> completions.add(Thread.currentThread().getName() + ":" + off + ":" + now));
            r.putLong(PAGE, 7);
            r.zapHostMapping(0, 4 * PAGE);

            CountDownLatch taken = new CountDownLatch(1), release = new CountDownLatch(1);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread holder = new Thread(() -> {
                // A shared reference held, as a follow_pfn result not yet released holds one.
                boolean held = r.pageStates().tryGet(1, false);
                try {
                    assertTrue(held, "page 1 is shared");
                    taken.countDown();
                    assertTrue(release.await(30, TimeUnit.SECONDS));
                    // The holder may touch the page while it holds the reference: it faults it back in.
                    MemorySegment seg = MemorySegment.ofAddress(r.hostAddress() + PAGE).reinterpret(PAGE);
                    seg.set(ValueLayout.JAVA_LONG, 8, 99);
                    assertTrue(r.hostPagemapEntry(PAGE).present());
                } catch (Throwable t) {
                    failure.set(t);
                } finally {
                    if (held) r.pageStates().put(1, false);
                }
            }, "holder");
            holder.start();
            assertTrue(taken.await(30, TimeUnit.SECONDS));
            assertEquals(1, r.references(PAGE));

            Conversion c = r.toPrivate(0, 4 * PAGE);
            System.out.println("toPrivate with a held reference: " + c);
            assertEquals(3, c.completed());
            assertEquals(1, c.pending());
            assertEquals(PAGE, c.firstPendingOffset());
            assertEquals(Mappability.NONE, r.mappability(PAGE));
            assertEquals(Mappability.GUEST, r.pendingTarget(PAGE));
            assertEquals(Mappability.GUEST, r.mappability(0));
            // Transient: nobody gets a new reference, shared or private.
            assertFalse(r.pageStates().tryGet(1, false));
            assertFalse(r.pageStates().tryGet(1, true));
            HostAccessRefusedException h = assertThrows(HostAccessRefusedException.class, () -> r.getLong(PAGE));
            assertEquals(Mappability.NONE, h.mappability());
            assertTrue(completions.isEmpty());

            release.countDown();
            holder.join(30_000);
            if (failure.get() != null) throw new AssertionError(failure.get());
            assertEquals(Mappability.GUEST, r.mappability(PAGE), "the final put finished the conversion");
            assertNull(r.pendingTarget(PAGE));
            assertEquals(0, r.references(PAGE));
            assertEquals(List.of("holder:" + PAGE + ":GUEST"), completions, "the final-put hook ran on the releasing thread");
            assertFalse(r.hostPagemapEntry(PAGE).present(), "the final put zapped the page the holder faulted in");

            // The same in the other direction, with a private (FOLL_GUEST) reference.
            assertTrue(r.pageStates().tryGet(2, true), "a private reference on a private page");
            Conversion back = r.toShared(0, 4 * PAGE);
            assertEquals(1, back.pending());
            assertEquals(2 * PAGE, back.firstPendingOffset());
            assertEquals(Mappability.NONE, r.mappability(2 * PAGE));
            r.pageStates().put(2, true);
            assertThrows(IllegalStateException.class, () -> r.pageStates().put(2, true), "released once only");
            assertEquals(Mappability.ALL, r.mappability(2 * PAGE));
            assertEquals(List.of("holder:" + PAGE + ":GUEST", "main:" + 2 * PAGE + ":ALL"), completions);
            assertEquals(7, r.getLong(PAGE));
            assertEquals(99, r.getLong(PAGE + 8), "the holder's write is in the guest_memfd");
        }
    }

    /**
     * Threads take and release shared references (as follow_pfn callers and accessors do) while another thread
     * converts the region back and forth. A reference holder must never see its page private; every
     * conversion must end (the last release finishes pending pages); no reference may be lost.
     */
    @Test
    void racingReferencesAgainstConversions() throws Exception {
        int pages = 16;
        try (GuestMemfdRegion r = region(pages)) {
            ConversionRace.Result race = ConversionRace.run(r.pageStates(), pages, 3, 300, () -> {
                long pending = r.toPrivate(0, pages * PAGE).pending();
                r.toShared(0, pages * PAGE);
                return pending;
            });
            assertTrue(race.referencesTaken() > 0);
            for (int p = 0; p < pages; p++) {
                assertEquals(0, r.references((long) p * PAGE), "page " + p + " leaked a reference");
                assertEquals(Mappability.ALL, r.pageStates().mappability(p), "page " + p + " ended shared (the last conversion)");
            }
        }
    }

    @Test
    void punchHoleZeroesThePageThroughTheNotifier() {
        Memslots memslots = new Memslots();
        MmuNotifier notifier = new MmuNotifier(memslots);
        try (GuestMemfdRegion r = region(4, notifier)) {
            assertSame(notifier, r.notifier(), "the region invalidates through the notifier it was created behind");
            Memslot m = r.memslot(0, 1, 0x100000);
            memslots.setMemslot(0, 1, m.flags(), 0x100000, r.size(), m.userspaceAddr(), m.gmemFd(), m.gmemOffset());
            for (int p = 0; p < 4; p++) r.putLong(p * PAGE, 0xAB00 + p);
            long seq = notifier.sequence();
            long gfn = 0x100000 / PAGE + 2;
            r.punchHole(2 * PAGE, PAGE);
            assertTrue(notifier.retryGfn(gfn, seq), "a lookup of the punched gfn taken before must retry");
            assertEquals(0, r.getLong(2 * PAGE), "punching a hole zeroes the page");
            assertEquals(0xAB01, r.getLong(PAGE));
            assertEquals(0xAB03, r.getLong(3 * PAGE));

            seq = notifier.sequence();
            r.zapHostMapping(0, 4 * PAGE);
            assertTrue(notifier.sequence() != seq, "the zap ran inside an invalidation");
            seq = notifier.sequence();
            r.toPrivate(0, PAGE);
            assertTrue(notifier.retryGfn(0x100000 / PAGE, seq), "a conversion invalidates the gfns");
            assertThrows(KvmException.class, () -> r.punchHole(PAGE, 100), "sub-page punch refused");
        }
    }

    @Test
    void guestMemfdFactsThroughTheRegion() {
        try (GuestMemfdRegion r = region(4)) {
            long rd = GuestMemfdFiles.readRaw(r.fd(), PAGE), wr = GuestMemfdFiles.writeRaw(r.fd(), PAGE);
            System.out.println("guest_memfd read() -> " + Errno.nameOf((int) -rd) + ", write() -> " + Errno.nameOf((int) -wr));
            assertTrue(rd < 0 && wr < 0, "read()/write() on a guest_memfd fail");
        }
        SyscallException size = assertThrows(SyscallException.class, () -> GuestMemfdRegion.create(vm, PAGE + 512));
        assertEquals(Errno.EINVAL.number, size.errno(), "a size that is not page-aligned is refused");

        // Without MMAP: mmap fails in the kernel, and the region never maps it or lets Java touch it.
        try (GuestMemfdRegion r = GuestMemfdRegion.adopt(vm.createGuestMemfd(4 * PAGE, 0))) {
            SyscallException e = assertThrows(SyscallException.class,
                    () -> Mman.mmap(0, PAGE, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, r.fd(), 0));
            assertEquals(Errno.ENODEV.number, e.errno(), "mmap of a guest_memfd without MMAP");
            assertEquals(GuestMemfdBacking.GUEST_MEMFD_GUEST_ONLY, r.backing());
            assertFalse(r.hostMapped());
            assertEquals(Mappability.GUEST, r.mappability(0), "without INIT_SHARED every page is private");
            assertEquals(Memslot.GUEST_MEMFD, r.memslot(0, 0, 0).flags());
            assertEquals(0, r.memslot(0, 0, 0).userspaceAddr());
            HostAccessRefusedException h = assertThrows(HostAccessRefusedException.class, () -> r.getLong(0));
            assertTrue(h.getMessage().contains("INIT_SHARED"), h.getMessage());
            assertThrows(HostAccessRefusedException.class, r::hostAddress);
            assertEquals(Errno.EINVAL, assertThrows(KvmException.class, () -> r.toShared(0, PAGE)).errno());
            r.punchHole(0, PAGE);
        }
        // MMAP without INIT_SHARED: host touches would SIGBUS, so it is not mapped either.
        if ((vm.capabilities().guestMemfdFlags() & KvmIoctls.GUEST_MEMFD_FLAG_MMAP) != 0) {
            try (GuestMemfdRegion r = GuestMemfdRegion.adopt(vm.createGuestMemfd(PAGE, KvmIoctls.GUEST_MEMFD_FLAG_MMAP))) {
                assertFalse(r.hostMapped());
                assertThrows(HostAccessRefusedException.class, () -> r.putByte(0, (byte) 1));
            }
        }
    }

    @Test
    void standInWithoutKvmSaysSoAndKeepsTheRules() {
        try (GuestMemfdRegion r = GuestMemfdRegion.create(null, 4 * PAGE)) {
            assertEquals(GuestMemfdBacking.MEMFD_STAND_IN, r.backing());
            assertNull(r.guestMemfd());
            assertEquals(0, r.memslot(0, 0, 0).flags(), "a memfd is not a guest_memfd slot");
            r.putLong(0, 5);
            assertEquals(0, assertThrows(ConversionException.class, () -> r.toPrivate(0, 4 * PAGE)).errorOffset());
            r.zapHostMapping(0, PAGE);
            assertTrue(r.toPrivate(0, 4 * PAGE).isComplete());
            assertTrue(assertThrows(HostAccessRefusedException.class, () -> r.getLong(0)).getMessage().contains("MEMFD_STAND_IN"), "every result says which backing it has");
            r.toShared(0, 4 * PAGE);
            assertEquals(5, r.getLong(0));
            r.punchHole(0, PAGE);
            assertEquals(0, r.getLong(0));
        }
        assertEquals(Errno.EINVAL, assertThrows(KvmException.class, () -> GuestMemfdRegion.standIn(PAGE + 1)).errno());
    }

    @Test
    void useAfterCloseThrows() {
        GuestMemfdRegion r = region(1);
        r.close();
        r.close();
        assertThrows(IllegalStateException.class, () -> r.getLong(0));
        assertThrows(IllegalStateException.class, () -> r.toPrivate(0, PAGE));
        assertThrows(IllegalStateException.class, r::fd);
        assertTrue(r.guestMemfd().isClosed(), "the region owns its guest_memfd");
    }
}
