package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.gmem.Conversion;
import io.guestmem.gmem.ConversionException;
import io.guestmem.gmem.GuestMemfdRegion;
import io.guestmem.gmem.HostAccessRefusedException;
import io.guestmem.mmu.FollowPfn;
import io.guestmem.mmu.FollowPfnRequest;
import io.guestmem.mmu.FollowPfnResult;
import io.guestmem.mmu.Mappability;
import io.guestmem.mmu.PfnError;
import io.guestmem.vm.VmMemory;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePoolExhaustedException;
import io.guestmem.host.HugePagePools;
import io.guestmem.host.HugePageSize;
import io.guestmem.kvm.KvmGuestMemfd;
import io.guestmem.kvm.KvmVm;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Faults injected into the library's setup calls: each must be a typed error (errno and call named) and leave
 * nothing behind: no mapping, fd, lock, hugetlb page or memslot. Limits and capabilities are lowered in child
 * JVMs (the test JVM itself needs address space and keeps CAP_IPC_LOCK).
 */
@ExtendWith(LeakGuard.class)
class FaultInjectionTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static final AtomicInteger faults = new AtomicInteger(), leaks = new AtomicInteger();

    @AfterAll
    static void report() {
        ReliabilityReport.put("fault injection", "faults injected (RLIMIT_AS, RLIMIT_MEMLOCK, empty hugetlb pools, KVM/writer slot refusals, guest_memfd conversions racing references)", faults.get());
        ReliabilityReport.put("fault injection", "leaks found after them", leaks.get());
        System.out.println("fault injection: " + faults.get() + " faults injected, " + leaks.get() + " leaks found");
    }

    /** Checks a child's FAULT lines: every fault typed with the expected errno, nothing leaked. */
    private static void checkChild(ChildJvm.Result r, int expectedFaults, Errno... errnos) {
        System.out.println(r.output());
        assertEquals(0, r.exit(), r.output());
        assertTrue(r.lines("UNEXPECTED").isEmpty(), r.output());
        assertTrue(r.output().contains("DONE"), r.output());
        List<String> lines = r.lines("FAULT ");
        assertEquals(expectedFaults, lines.size(), r.output());
        for (String l : lines) {
            faults.incrementAndGet();
            int n = Integer.parseInt(l.substring(l.indexOf("leaks=") + 6).split(" ")[0]);
            leaks.addAndGet(n);
            assertEquals(0, n, l);
            assertTrue(l.contains(" SyscallException ") || l.contains("Exception "), l);
            assertTrue(List.of(errnos).stream().anyMatch(e -> l.contains(" " + e.name() + " ")), l);
        }
    }

    @Test
    void mmapUnderALoweredAddressSpaceLimit() {
        ChildJvm.Result r = ChildJvm.run(List.of(), FaultChild.class, "as");
        checkChild(r, 3, Errno.ENOMEM);
        assertTrue(r.output().contains("from mmap"), r.output());
    }

    @Test
    void mlockBeyondMemlockLimitWithoutCapIpcLock() {
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/setpriv")) && Files.isExecutable(Path.of("/usr/bin/prlimit")),
                "setpriv and prlimit (util-linux) are needed to start a child without CAP_IPC_LOCK");
        ChildJvm.Result r = ChildJvm.run(List.of("/usr/bin/prlimit", "--memlock=1048576:1048576", "/usr/bin/setpriv",
                "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock"), FaultChild.class, "memlock");
        assertTrue(r.output().contains("CAP_IPC_LOCK=false"), r.output());
        checkChild(r, 3, Errno.ENOMEM, Errno.EPERM, Errno.EAGAIN);
        assertTrue(r.output().contains("from mlock"), r.output());
        assertTrue(r.output().contains("OK within-limit VmLck=262144"), r.output());
        assertTrue(r.output().contains("OK within-limit-closed leaks=0"), r.output());
    }

    @Test
    void emptyHugetlbPools() throws Exception {
        for (HugePageSize size : HugePagePools.sizes()) {
            HugePagePools.Pool pool = HugePagePools.pool(size);
            long overcommit = Long.parseLong(Files.readString(size.sysfsDir().resolve("nr_overcommit_hugepages")).trim());
            // More than the pool can serve even if another process frees pages meanwhile.
            long pages = Math.max(0, pool.available()) + overcommit + (size.bytes() >= 1L << 30 ? 2 : 64);
            for (boolean memfd : new boolean[] {false, true}) {
                LeakGuard.Snapshot before = LeakGuard.snapshot();
                HugePagePoolExhaustedException e = assertThrows(HugePagePoolExhaustedException.class, () -> {
                    try (HostRegion r = memfd ? HostRegion.memfdHugetlb(pages * size.bytes(), size).name("fault-pool").create()
                            : HostRegion.hugetlb(pages * size.bytes(), size).create()) {
                        System.out.println("unexpectedly created " + r);
                    }
                });
                faults.incrementAndGet();
                System.out.println("empty " + size + " pool" + (memfd ? " (memfd)" : "") + ": " + e.getMessage());
                assertEquals(Errno.ENOMEM.number, e.errno());
                assertEquals(size, e.size());
                assertEquals(pages, e.pagesAsked());
                List<String> left = LeakGuard.leaks(before, 0);
                leaks.addAndGet(left.size());
                assertEquals(List.of(), left);
                assertEquals(pool.total(), HugePagePools.pool(size).total(), "the pool was not touched");
            }
        }
    }

    /** Library state: every address space's set is the very object it was. */
    private static void assertUnchanged(Memslots slots, MemslotSet[] sets, long generation) {
        for (int as = 0; as < sets.length; as++) assertSame(sets[as], slots.current(as), "address space " + as + " changed");
        assertEquals(generation, slots.generation());
    }

    private void refused(Memslots slots, KvmVm vm, Class<? extends RuntimeException> type, Errno errno, Supplier<Object> call) {
        MemslotSet[] sets = new MemslotSet[slots.addressSpaces()];
        for (int as = 0; as < sets.length; as++) sets[as] = slots.current(as);
        long gen = slots.generation();
        Map<Integer, Memslot> kvm = vm.isClosed() ? null : vm.mirroredSlots();
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        RuntimeException e = assertThrows(type, call::get);
        faults.incrementAndGet();
        System.out.println("refused: " + e.getMessage());
        if (errno != null) {
            int got = ((io.guestmem.sys.ErrnoException) e).errnoNumber(); // SyscallException or KvmException: one base
            assertEquals(errno.number, got, e.getMessage());
        }
        assertUnchanged(slots, sets, gen);
        if (kvm != null) {
            assertEquals(kvm, vm.mirroredSlots(), "KVM's slots changed");
            assertTrue(vm.mirrorFaults().isEmpty(), vm.mirrorFaults().toString());
        }
        List<String> left = LeakGuard.leaks(before, 0);
        leaks.addAndGet(left.size());
        assertEquals(List.of(), left);
    }

    @Test
    void kvmAndTheWriterRefusingASlotChangeNothing() {
        Assumptions.assumeTrue(Files.exists(Path.of("/dev/kvm")), "no /dev/kvm on this machine");
        try (KvmVm vm = KvmVm.open(); KvmVm other = KvmVm.open();
             HostRegion ram = HostRegion.anonymous(64 * PAGE).create()) {
            Memslots slots = new Memslots(vm.memslotsConfig());
            slots.addObserver(vm.memslotObserver());
            slots.setMemslot(0, 0, 0, 0, 32 * PAGE, ram.address());
            // The writer's own refusals (never reach KVM): overlap, unaligned, bad flags.
            refused(slots, vm, KvmException.class, Errno.EEXIST, () -> slots.setMemslot(0, 1, 0, 16 * PAGE, 32 * PAGE, ram.address() + 32 * PAGE));
            refused(slots, vm, KvmException.class, Errno.EINVAL, () -> slots.setMemslot(0, 1, 0, 64 * PAGE + 512, 16 * PAGE, ram.address() + 32 * PAGE));
            refused(slots, vm, KvmException.class, Errno.EINVAL, () -> slots.setMemslot(0, 1, 0, 64 * PAGE, 16 * PAGE, ram.address() + 32 * PAGE + 8));
            refused(slots, vm, KvmException.class, Errno.EINVAL, () -> slots.setMemslot(0, 1, 0x80, 64 * PAGE, 16 * PAGE, ram.address() + 32 * PAGE));
            refused(slots, vm, KvmException.class, Errno.EINVAL, () -> slots.deleteMemslot(0, 7));
            // kvm_gmem_bind's refusals (another VM's guest_memfd, a range past the file's end): the writer
            // refuses them itself now, from the VM's guest_memfd table, so KVM never sees them.
            if (vm.capabilities().guestMemfdMmapShared()) {
                KvmGuestMemfd mine = vm.createGuestMemfd(8 * PAGE), theirs = other.createGuestMemfd(8 * PAGE);
                long hva = mine.mapShared();
                try {
                    refused(slots, vm, KvmException.class, Errno.EINVAL, () -> slots.setMemslot(0, 1, Memslot.GUEST_MEMFD,
                            64 * PAGE, 4 * PAGE, hva, theirs.fd(), 0));
                    refused(slots, vm, KvmException.class, Errno.EINVAL, () -> slots.setMemslot(0, 1, Memslot.GUEST_MEMFD,
                            64 * PAGE, 4 * PAGE, hva, mine.fd(), 6 * PAGE));
                } finally {
                    Mman.munmap(hva, mine.size());
                }
            }
            // A closed VM's observer refuses too (use after close): the writer stays where it was.
            vm.close();
            refused(slots, vm, IllegalStateException.class, null, () -> slots.setMemslot(0, 1, 0, 64 * PAGE, 16 * PAGE, ram.address() + 32 * PAGE));
            assertFalse(slots.current().slots().isEmpty());
            assertNull(slots.current().byId(1));
        }
    }

    @Test
    void guestMemfdConversionRacingAReference() throws Exception {
        Assumptions.assumeTrue(Files.exists(Path.of("/dev/kvm")), "no /dev/kvm on this machine");
        long pages = 16, size = pages * PAGE;
        try (KvmVm vm = KvmVm.open()) {
            Assumptions.assumeTrue(vm.capabilities().guestMemfdMmapShared(), "guest_memfd MMAP|INIT_SHARED not offered");
            try (VmMemory mem = new VmMemory(vm); GuestMemfdRegion g = mem.createGuestMemfd(size)) {
                assertTrue(g.hostMapped());
                // 1. A host mapping still maps a page: toPrivate is refused (EAGAIN at that page), nothing changed.
                MemorySegment.ofAddress(g.hostAddress()).reinterpret(size).set(ValueLayout.JAVA_LONG, 3 * PAGE, 1);
                ConversionException busy = assertThrows(ConversionException.class, () -> g.toPrivate(0, size));
                faults.incrementAndGet();
                System.out.println("conversion with a host mapping: " + busy.getMessage());
                assertEquals(Errno.EAGAIN, busy.errno());
                assertEquals(3 * PAGE, busy.errorOffset());
                for (long i = 0; i < pages; i++) assertEquals(Mappability.ALL, g.pageStates().mappability(i), "page " + i + " after the refusal");

                // 2. A follow_pfn reference held across toPrivate: the page waits (NONE), the host's access is
                //    refused typed and follow_pfn refuses both views; the release is the final put.
                long gpa = 0x4000_0000L, gfn5 = gpa / PAGE + 5;
                mem.addGuestMemfd(1, gpa, g);
                FollowPfn fp = mem.followPfn();
                FollowPfnResult held = fp.follow(FollowPfnRequest.read(gfn5));
                assertTrue(held.ok(), held::toString);
                assertEquals(1, g.references(5 * PAGE), "the follow_pfn reference is a guest_memfd page reference");
                g.zapHostMapping(0, size);
                Conversion c = g.toPrivate(0, size);
                assertEquals(1, c.pending());
                assertEquals(Mappability.NONE, g.pageStates().mappability(5));
                HostAccessRefusedException shared = assertThrows(HostAccessRefusedException.class, () -> g.getLong(5 * PAGE));
                assertEquals(Errno.EFAULT, shared.errno());
                assertEquals(Mappability.NONE, shared.mappability());
                FollowPfnResult guest = fp.follow(FollowPfnRequest.read(gfn5).withGuest(true));
                FollowPfnResult host = fp.follow(FollowPfnRequest.read(gfn5));
                faults.addAndGet(3);
                assertEquals(PfnError.FAULT, guest.error(), guest::toString);
                assertEquals(PfnError.FAULT, host.error(), host::toString);
                System.out.println("while converting: " + shared.getMessage() + " / " + guest + " / " + host);
                fp.releaseFaultinPage(held, false, false);
                assertEquals(Mappability.GUEST, g.pageStates().mappability(5), "the final put finished the conversion");
                assertEquals(0, g.references(5 * PAGE));

                // 3. Race: one thread takes and drops shared references while another converts back and forth.
                g.toShared(0, size);
                AtomicBoolean stop = new AtomicBoolean();
                AtomicLong taken = new AtomicLong(), refused = new AtomicLong(), conversions = new AtomicLong();
                List<Throwable> unexpected = new CopyOnWriteArrayList<>();
                Thread user = new Thread(() -> {
                    ThreadLocalRandom rnd = ThreadLocalRandom.current();
                    while (!stop.get()) {
                        long p = rnd.nextLong(pages);
                        try {
                            // A shared reference, as follow_pfn takes one (without faulting the page in, which
                            // would make toPrivate refuse with EAGAIN): refused while the page is not shared.
                            if (g.pageStates().tryGet(p, false)) {
                                taken.incrementAndGet();
                                g.pageStates().put(p, false);
                            } else {
                                refused.incrementAndGet();
                            }
                        } catch (Throwable e) {
                            unexpected.add(e);
                        }
                    }
                });
                user.start();
                long end = System.nanoTime() + 2_000_000_000L;
                try {
                    while (System.nanoTime() < end && unexpected.isEmpty()) {
                        g.zapHostMapping(0, size);
                        g.toPrivate(0, size);
                        g.toShared(0, size);
                        conversions.addAndGet(2);
                    }
                } finally {
                    stop.set(true);
                    user.join();
                }
                faults.incrementAndGet(); // the race itself; its refusals are a figure of their own
                ReliabilityReport.put("fault injection", "guest_memfd conversion race (2 s): conversions / references taken / refused",
                        conversions.get() + " / " + taken.get() + " / " + refused.get());
                System.out.println("conversion race: " + conversions.get() + " conversions, " + taken.get() + " references taken, "
                        + refused.get() + " refused while converting");
                assertEquals(List.of(), unexpected);
                assertTrue(refused.get() > 0 && taken.get() > 0, "the race raced nothing");
                for (long i = 0; i < pages; i++) {
                    assertEquals(0, g.references(i * PAGE), "page " + i + " still referenced");
                    assertEquals(Mappability.ALL, g.pageStates().mappability(i), "page " + i + " after the last toShared");
                }
            }
        }
    }
}
