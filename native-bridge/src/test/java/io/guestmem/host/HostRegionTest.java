package io.guestmem.host;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.sys.Mempolicy;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.BitSet;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/** Regions of every base-page kind on real memory, checked in the kernel's own /proc view. */
class HostRegionTest {
    static final long P = Posix.PAGE_SIZE;
    static final long MiB = 1 << 20;

    /** Creates, writes, reads back, closes, and checks nothing stays mapped. */
    private static HostRegion roundTrip(Supplier<HostRegion> create, Backing kind) {
        HostRegion r = create.get();
        long start = r.address() - r.guardBytes(), end = r.address() + r.size() + r.guardBytes();
        try {
            assertEquals(kind, r.backing());
            assertFalse(ProcText.overlapping(r.address(), r.address() + r.size()).isEmpty());
            MemorySegment s = r.segment();
            assertEquals(r.size(), s.byteSize());
            s.set(ValueLayout.JAVA_LONG, 0, 0x1234L);
            s.set(ValueLayout.JAVA_LONG, r.size() - 8, 0x5678L);
            assertEquals(0x1234L, s.get(ValueLayout.JAVA_LONG, 0));
            assertEquals(0x5678L, s.get(ValueLayout.JAVA_LONG, r.size() - 8));
        } finally {
            r.close();
        }
        Leaks.assertNothingMapped(start, end);
        return r;
    }

    @Test
    void everyBasePageKindMapsAndUnmaps() {
        roundTrip(() -> HostRegion.anonymous(4 * MiB).create(), Backing.ANON);
        roundTrip(() -> HostRegion.anonymousShared(4 * MiB).create(), Backing.ANON_SHARED);
        roundTrip(() -> HostRegion.thp(8 * MiB).create(), Backing.THP);
        HostRegion m = roundTrip(() -> HostRegion.memfd(4 * MiB).name("gm-kinds").create(), Backing.MEMFD);
        Leaks.assertNoMemfd("gm-kinds");
        assertThrows(IllegalStateException.class, m::fd);
        roundTrip(() -> HostRegion.secret(1 * MiB).create(), Backing.SECRET);
    }

    @Test
    void perfRingIsAReadOnlyPfnmapRegion() {
        io.guestmem.host.Pfnmap.unavailableReason().ifPresent(why -> {
            System.out.println("SKIP perfRingIsAReadOnlyPfnmapRegion: " + why);
            org.junit.jupiter.api.Assumptions.abort(why);
        });
        HostRegion r = HostRegion.perfRing(8).create();
        long start = r.address() - r.guardBytes(), end = r.address() + r.size() + r.guardBytes();
        try {
            assertEquals(Backing.PFNMAP, r.backing());
            assertEquals(9 * P, r.size());
            Set<String> flags = ProcText.vmFlags(r.address());
            assertTrue(flags.contains("pf") && flags.contains("io"), "VmFlags " + flags);
            assertTrue(r.fd().isEmpty());
            r.segment().get(ValueLayout.JAVA_LONG, r.size() - 8); // reading the data pages is fine
            assertThrows(IllegalArgumentException.class, () -> r.segment().set(ValueLayout.JAVA_LONG, P, 1)); // FFM: "read-only segment"
        } finally {
            r.close();
        }
        Leaks.assertNothingMapped(start, end);
    }

    @Test
    void pageSizeAndFdPerKind() {
        try (HostRegion a = HostRegion.anonymous(MiB).create(); HostRegion m = HostRegion.memfd(MiB).create()) {
            assertEquals(P, a.pageSize());
            assertTrue(a.fd().isEmpty());
            assertEquals(P, m.pageSize());
            assertTrue(m.fd().isPresent());
            assertEquals(0, m.fdOffset());
        }
    }

    @Test
    void thpRegionIsPmdAlignedAdvisedAndGetsHugePages() {
        long pmd = HugePagePools.thpSize();
        // At least two PMDs: a region smaller than one (8 MiB with 16 KiB pages, whose PMD is 32 MiB) cannot get one.
        try (HostRegion r = HostRegion.thp(Math.max(8 * MiB, 2 * pmd)).prefault(Prefault.Mode.WRITE).create()) {
            assertEquals(0, r.address() % pmd, "PMD aligned");
            assertTrue(ProcText.vmFlags(r.address()).contains("hg"));
            long thpKb = ProcText.smapsKb(r.address(), "AnonHugePages");
            assertTrue(thpKb > 0, "the kernel backed the THP-advised region with huge pages: AnonHugePages " + thpKb + " kB");
        }
    }

    @Test
    void prefaultMakesEveryPageResident() {
        try (HostRegion r = HostRegion.anonymous(16 * MiB).prefault(Prefault.Mode.WRITE).prefaultThreads(2).create()) {
            assertEquals(16 * MiB / P, Mman.residentPages(r.address(), r.size()));
            assertEquals(16 * MiB / 1024, ProcText.smapsKb(r.address(), "Rss"));
        }
        int[] mask = io.guestmem.sys.Sched.allowedCpus();
        try (HostRegion r = HostRegion.anonymous(128 * MiB).prefault(Prefault.Mode.WRITE).create()) {
            assertTrue(Prefault.threadsFor(r.size()) >= Math.min(2, Runtime.getRuntime().availableProcessors()));
            assertEquals(128 * MiB / P, Mman.residentPages(r.address(), r.size()), "split prefault covers every page");
        }
        assertArrayEquals(mask, io.guestmem.sys.Sched.allowedCpus(), "the caller's CPU mask is restored after the workers start");
        try (HostRegion r = HostRegion.secret(MiB).prefault(Prefault.Mode.WRITE).create()) {
            assertEquals(MiB / P, Mman.residentPages(r.address(), r.size()), "secretmem prefaulted by touching");
        }
        try (HostRegion r = HostRegion.memfd(4 * MiB).prefault(Prefault.Mode.WRITE).create()) {
            assertEquals(4 * MiB / P, Mman.residentPages(r.address(), r.size()));
        }
    }

    @Test
    void mlockShowsInVmLckAndIsReturnedOnClose() {
        long before = ProcText.statusKb("VmLck");
        HostRegion r = HostRegion.anonymous(8 * MiB).mlock().create();
        try {
            assertEquals(before + 8 * 1024, ProcText.statusKb("VmLck"));
            assertTrue(ProcText.vmFlags(r.address()).contains("lo"));
            assertEquals(8 * MiB / P, Mman.residentPages(r.address(), r.size()));
        } finally {
            r.close();
        }
        assertEquals(before, ProcText.statusKb("VmLck"));
        try (HostRegion f = HostRegion.anonymous(4 * MiB).mlockOnFault().create()) {
            assertEquals(before + 4 * 1024, ProcText.statusKb("VmLck"));
            assertEquals(0, Mman.residentPages(f.address(), f.size()));
        }
        assertEquals(before, ProcText.statusKb("VmLck"));
    }

    @Test
    void guardPagesAreProtNoneOnBothSides() {
        try (HostRegion r = HostRegion.anonymous(2 * MiB).guardPages(2).create()) {
            assertEquals(2 * P, r.guardBytes());
            ProcText.MapLine before = ProcText.mapOf(r.address() - 1);
            ProcText.MapLine after = ProcText.mapOf(r.address() + r.size());
            assertEquals("---p", before.perms());
            assertEquals("---p", after.perms());
            assertTrue(before.end() == r.address() && before.start() <= r.address() - 2 * P, before.toString());
            assertTrue(after.start() == r.address() + r.size() && after.end() >= r.address() + r.size() + 2 * P, after.toString());
            assertEquals("rw-p", ProcText.mapOf(r.address()).perms());
        }
        try (HostRegion r = HostRegion.anonymous(2 * MiB).guardPages(0).create()) {
            assertEquals(0, r.guardBytes());
            assertEquals("rw-p", ProcText.mapOf(r.address()).perms());
            assertEquals("rw-p", ProcText.mapOf(r.address() + r.size() - 1).perms());
        }
    }

    @Test
    void dontDumpAndMergeableShowInVmFlags() {
        try (HostRegion r = HostRegion.anonymous(2 * MiB).dontDump().mergeable().create()) {
            Set<String> flags = ProcText.vmFlags(r.address());
            assertTrue(flags.contains("dd"), "DONTDUMP: " + flags);
            assertTrue(flags.contains("mg"), "MERGEABLE: " + flags);
        }
        try (HostRegion r = HostRegion.anonymous(2 * MiB).create()) {
            Set<String> flags = ProcText.vmFlags(r.address());
            assertFalse(flags.contains("dd") || flags.contains("mg"), "not asked for: " + flags);
        }
    }

    @Test
    void numaPolicyShowsInNumaMaps() {
        BitSet node0 = new BitSet();
        node0.set(0);
        try (HostRegion r = HostRegion.anonymous(2 * MiB).numa(Mempolicy.Mode.BIND, node0).prefault(Prefault.Mode.WRITE).create()) {
            String line = ProcText.numaMapsOf(r.address());
            assertNotNull(line);
            assertTrue(line.contains("bind:0"), line);
            assertTrue(line.contains("N0=" + (2 * MiB / P)), "every page on node 0: " + line);
        }
        try (HostRegion r = HostRegion.anonymous(2 * MiB).numa(Mempolicy.Mode.INTERLEAVE, node0).create()) {
            assertTrue(ProcText.numaMapsOf(r.address()).contains("interleave:0"));
        }
    }

    @Test
    void useAfterCloseThrowsAndCloseIsIdempotent() {
        HostRegion r = HostRegion.anonymous(MiB).create();
        MemorySegment s = r.segment();
        s.set(ValueLayout.JAVA_INT, 0, 1);
        r.close();
        r.close();
        assertFalse(r.isOpen());
        assertThrows(IllegalStateException.class, () -> s.get(ValueLayout.JAVA_INT, 0));
        assertThrows(IllegalStateException.class, () -> s.set(ValueLayout.JAVA_INT, 0, 2));
        assertThrows(IllegalStateException.class, r::segment);
        assertThrows(IllegalStateException.class, r::fd);
        Leaks.assertNothingMapped(r.address() - r.guardBytes(), r.address() + r.size() + r.guardBytes());
    }

    @Test
    void aCloseGuardThatRefusesKeepsTheRegionMappedAndTheOthersAreToldSo() {
        HostRegion r = HostRegion.anonymous(MiB).create();
        java.util.List<String> events = new java.util.ArrayList<>();
        boolean[] refuse = {true};
        HostRegion.CloseGuard first = new HostRegion.CloseGuard() {
            @Override
            public void beforeClose(HostRegion region) {
                events.add("first asked");
            }

            @Override
            public void closeAborted(HostRegion region) {
                events.add("first aborted");
            }
        };
        r.addCloseGuard(first);
        r.addCloseGuard(region -> {
            events.add("second asked");
            if (refuse[0]) throw new IllegalStateException("busy");
        });
        r.onClose(() -> events.add("hook"));
        RegionView v = r.view(0, P);
        assertEquals("busy", assertThrows(IllegalStateException.class, r::close).getMessage());
        assertEquals(java.util.List.of("first asked", "second asked", "first aborted"), events, "no hook ran");
        assertTrue(r.isOpen());
        assertTrue(v.isOpen());
        r.segment().set(ValueLayout.JAVA_INT, 0, 5);
        assertEquals(5, v.segment().get(ValueLayout.JAVA_INT, 0));
        assertFalse(ProcText.overlapping(r.address(), r.address() + r.size()).isEmpty(), "still mapped");

        events.clear();
        refuse[0] = false;
        r.close();
        assertEquals(java.util.List.of("first asked", "second asked", "hook"), events);
        assertFalse(v.isOpen());
        Leaks.assertNothingMapped(r.address() - r.guardBytes(), r.address() + r.size() + r.guardBytes());
        r.addCloseGuard(first); // on a closed region: nothing to guard
        r.close();
        assertEquals(3, events.size(), "a closed region asks no one");
    }

    @Test
    void closeWhileAnotherThreadReadsNeverCrashes() throws Exception {
        HostRegion r = HostRegion.anonymous(4 * MiB).prefault(Prefault.Mode.WRITE).create();
        MemorySegment s = r.segment();
        CompletableFuture<Throwable> reader = CompletableFuture.supplyAsync(() -> {
            try {
                long sum = 0;
                while (true) for (long off = 0; off < s.byteSize(); off += P) sum += s.get(ValueLayout.JAVA_LONG, off);
            } catch (Throwable t) {
                return t;
            }
        });
        Thread.sleep(50);
        r.close();
        assertInstanceOf(IllegalStateException.class, reader.get(10, TimeUnit.SECONDS));
    }

    @Test
    void badInputIsATypedErrorAndLeavesNothing() {
        Set<Leaks.Range> before = Leaks.snapshot();
        assertTrue(assertThrows(IllegalArgumentException.class, () -> HostRegion.anonymous(0).create())
                .getMessage().contains("positive"));
        assertThrows(IllegalArgumentException.class, () -> HostRegion.anonymous(-P).create());
        assertTrue(assertThrows(IllegalArgumentException.class, () -> HostRegion.anonymous(P + 1).create())
                .getMessage().contains("not a multiple"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> HostRegion.anonymous(Long.MAX_VALUE & -P).create())
                .getMessage().contains("absurd"));
        assertThrows(IllegalArgumentException.class, () -> HostRegion.anonymous(MiB).guardPages(-1));
        assertThrows(IllegalArgumentException.class, () -> HostRegion.perfRing(8).mlock().create());
        assertThrows(IllegalArgumentException.class, () -> HostRegion.perfRing(3));
        assertThrows(IllegalArgumentException.class, () -> HostRegion.ofFd(-1, 0, MiB, Backing.FD));
        assertThrows(IllegalArgumentException.class, () -> HostRegion.ofFd(3, 0, MiB, Backing.ANON));
        Leaks.assertNoNewMappingSized(before, 2 * MiB, Long.MAX_VALUE);
    }

    @Test
    void sizeTheKernelRefusesRollsBackTheReservation() throws Exception {
        String mode = Files.readString(Path.of("/proc/sys/vm/overcommit_memory")).trim();
        org.junit.jupiter.api.Assumptions.assumeTrue(!mode.equals("1"),
                "vm.overcommit_memory=1 accepts any size, so there is no refusal to observe");
        // 64 TiB of private writable memory charged in full at mmap (reserve(true): a no-reserve region of
        // this size maps under modes 0 and 1, see NoReserveTest): beyond RAM + swap.
        long tooBig = 64L << 40;
        Set<Leaks.Range> before = Leaks.snapshot();
        SyscallException e = assertThrows(SyscallException.class, () -> HostRegion.anonymous(tooBig).reserve(true).create());
        assertEquals("ENOMEM", e.errnoName());
        assertTrue(e.getMessage().contains("mmap("), e.getMessage());
        Leaks.assertNoNewMappingSized(before, 1L << 40, Long.MAX_VALUE);
    }

    @Test
    void failureAfterMappingUndoesMappingAndFd() {
        BitSet absent = new BitSet();
        absent.set(1000); // no such node: mbind fails after the fd and mapping exist
        Set<Leaks.Range> before = Leaks.snapshot();
        SyscallException e = assertThrows(SyscallException.class,
                () -> HostRegion.memfd(8 * MiB).name("gm-rollback").numa(Mempolicy.Mode.BIND, absent).create());
        assertEquals("EINVAL", e.errnoName());
        assertTrue(e.getMessage().contains("mbind("), e.getMessage());
        Leaks.assertNoNewMappingSized(before, 8 * MiB, 8 * MiB + 2 * P);
        Leaks.assertNoMemfd("gm-rollback");
    }
}
