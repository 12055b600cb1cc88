package io.guestmem.host;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.procfs.Overcommit;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.PagemapScan;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.procfs.Smaps;
import io.guestmem.procfs.VmFlag;
import io.guestmem.procfs.Vma;
import io.guestmem.sys.Capabilities;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.Rlimit;
import io.guestmem.sys.SyscallException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Function;
import java.util.function.Supplier;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Commit accounting of host regions, in the kernel's own words: the VMA's smaps VmFlags ("nr" for
 * VM_NORESERVE, "ac" for VM_ACCOUNT, the flag of a mapping charged in full at mmap), a 1 TiB guest on a
 * machine with far less RAM, pagemap's present bits and Rss for what it costs, and /proc/self/maps for what is
 * left after it closes.
 *
 * <p>Why 1 TiB cannot be mapped reserved under vm.overcommit_memory=0 (the default): a private writable mapping
 * without MAP_NORESERVE is charged in full when it is created, and the mode-0 heuristic
 * ({@code __vm_enough_memory}, OVERCOMMIT_GUESS) refuses any one charge of more pages than RAM + swap
 * ({@code totalram_pages() + total_swap_pages}), whatever is in use. Shared anonymous memory is charged the
 * same way, through the shmem object behind it. With MAP_NORESERVE nothing is charged at mmap, and only the
 * pages touched cost memory. Under mode 1 every charge succeeds (the reserved control has nothing to refuse);
 * under mode 2 the kernel ignores MAP_NORESERVE (do_mmap only sets VM_NORESERVE when the mode is not NEVER),
 * so a 1 TiB region cannot be mapped at all and the 1 TiB tests skip saying so.
 */
class NoReserveTest {
    static final long P = Posix.PAGE_SIZE;
    static final long MiB = 1 << 20;
    static final long GiB = 1L << 30;
    static final long TiB = 1L << 40;

    private static Vma vma(HostRegion r) {
        Vma v = Smaps.vmaOf(r.address());
        assertNotNull(v, "no VMA at " + r);
        assertTrue(v.start() <= r.address() && v.end() >= r.address() + r.size(), v + " does not cover " + r);
        return v;
    }

    private static void skip(String test, String why) {
        System.out.println("SKIP " + test + ": " + why);
        Assumptions.abort(why);
    }

    /** Skips a 1 TiB test where no 1 TiB region can be mapped for a reason that is not the one under test. */
    private static Overcommit assumeRoomForATebibyte(String test) {
        Overcommit oc = Overcommit.now();
        if (!oc.honorsNoReserve()) {
            skip(test, "vm.overcommit_memory=2: the kernel ignores MAP_NORESERVE and would charge the whole 1 TiB "
                    + "against CommitLimit (" + Fmt.size(oc.commitLimit()) + "), so no 1 TiB region can be mapped");
        }
        assumeAddressSpaceForATebibyte(test);
        return oc;
    }

    private static void assumeAddressSpaceForATebibyte(String test) {
        try (Pagemap pm = Pagemap.openSelf()) {
            if (pm.userAddressLimit() < 4 * TiB)
                skip(test, "the user address space ends at " + Fmt.hex(pm.userAddressLimit()) + ": no room for 1 TiB");
        }
        Rlimit.Limit as = Rlimit.getrlimit(Rlimit.RLIMIT_AS);
        if (!as.softUnlimited() && as.soft() < 2 * TiB) skip(test, "RLIMIT_AS is " + as + ": no room for 1 TiB");
    }

    /**
     * The control: the same 1 TiB reserved is refused with ENOMEM from mmap under the mode-0 heuristic (see the
     * class comment), and the refusal leaves nothing mapped. Said, not asserted, where the heuristic would
     * accept it (mode 1, or RAM + swap of more than 1 TiB).
     */
    private static void reservedTebibyteIsRefused(Overcommit oc, Function<Long, RegionBuilder> kind, String what) {
        if (!oc.heuristicRefuses(TiB)) {
            System.out.println("note: " + what + " reserved is not refused here (vm.overcommit_memory=" + oc.mode()
                    + ", RAM + swap " + Fmt.size(oc.memTotal() + oc.swapTotal()) + "), so the control is not run");
            return;
        }
        Set<Leaks.Range> before = Leaks.snapshot();
        SyscallException e = assertThrows(SyscallException.class, () -> kind.apply(TiB).reserve(true).create(),
                what + " reserved exceeds RAM + swap (" + Fmt.size(oc.memTotal() + oc.swapTotal()) + ")");
        assertEquals("ENOMEM", e.errnoName(), e.getMessage());
        assertTrue(e.getMessage().contains("mmap("), e.getMessage());
        Leaks.assertNoNewMappingSized(before, TiB, Long.MAX_VALUE);
    }

    @Test
    void guestRamKindsMapNoReserveByDefaultAndReserveOnRequest() {
        Overcommit oc = Overcommit.now();
        boolean honored = oc.honorsNoReserve();
        if (!honored) System.out.println("note: vm.overcommit_memory=2: the kernel ignores MAP_NORESERVE, so no region shows \"nr\"");
        long thp = Math.max(4 * MiB, 2 * HugePagePools.thpSize());
        record Kind(String name, Supplier<RegionBuilder> builder, boolean isPrivate) {}
        List<Kind> kinds = List.of(
                new Kind("anon", () -> HostRegion.anonymous(4 * MiB), true),
                new Kind("thp", () -> HostRegion.thp(thp), true),
                new Kind("anon-shared", () -> HostRegion.anonymousShared(4 * MiB), false),
                new Kind("memfd", () -> HostRegion.memfd(4 * MiB).name("gm-nores"), false),
                new Kind("secret", () -> HostRegion.secret(MiB), false));
        for (Kind k : kinds) {
            try (HostRegion r = k.builder().get().create()) {
                assertFalse(r.reserved(), k.name());
                Vma v = vma(r);
                assertEquals(honored, v.has(VmFlag.NORESERVE), k.name() + " by default: VmFlags " + v.vmFlagCodes());
                // A private mapping the kernel did not make VM_NORESERVE is charged in full (VM_ACCOUNT).
                assertEquals(k.isPrivate() && !honored, v.has(VmFlag.ACCOUNT), k.name() + ": VmFlags " + v.vmFlagCodes());
                r.segment().set(ValueLayout.JAVA_LONG, r.size() - 8, 42);
                assertEquals(42, r.segment().get(ValueLayout.JAVA_LONG, r.size() - 8));
            }
            try (HostRegion r = k.builder().get().reserve(true).create()) {
                assertTrue(r.reserved(), k.name());
                Vma v = vma(r);
                assertFalse(v.has(VmFlag.NORESERVE), k.name() + " reserve(true): VmFlags " + v.vmFlagCodes());
                // Private: charged at mmap. Shared: never charged through the VMA (anon-shared is charged
                // through its shmem object instead; memfd, secret: see RegionBuilder.reserve).
                assertEquals(k.isPrivate(), v.has(VmFlag.ACCOUNT), k.name() + " reserve(true): VmFlags " + v.vmFlagCodes());
            }
            try (HostRegion r = k.builder().get().reserve(false).create()) {
                assertEquals(honored, vma(r).has(VmFlag.NORESERVE), k.name() + " reserve(false)");
            }
        }
        Leaks.assertNoMemfd("gm-nores");
    }

    @Test
    void hugetlbAndPfnmapRefuseNoReserve() {
        for (HugePageSize s : HugePagePools.sizes()) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> HostRegion.hugetlb(s.bytes(), s).reserve(false).create());
            assertTrue(e.getMessage().contains("always reserved") && e.getMessage().contains("SIGBUS"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> HostRegion.memfdHugetlb(s.bytes(), s).reserve(false).create());
        }
        assertTrue(assertThrows(IllegalArgumentException.class, () -> HostRegion.perfRing(8).reserve(false).create())
                .getMessage().contains("pfnmap"));
    }

    @Test
    void hugetlbRegionIsMappedReserved() {
        HugePageSize twoM = HugePagePools.sizes().stream().filter(s -> s.bytes() == 2 * MiB).findFirst().orElse(null);
        if (twoM == null) skip("hugetlbRegionIsMappedReserved", "no 2 MiB hugetlb pool: " + HugePagePools.sizes());
        if (!Capabilities.has(Capabilities.CAP_SYS_ADMIN))
            skip("hugetlbRegionIsMappedReserved", "raising a hugetlb pool needs root (CAP_SYS_ADMIN)");
        try (HugePagePools.Reservation res = HugePagePools.raise(twoM, 1);
             HostRegion r = HostRegion.hugetlb(2 * MiB, twoM).create()) {
            assertTrue(r.reserved());
            Vma v = vma(r);
            assertTrue(v.has(VmFlag.HUGETLB), "VmFlags " + v.vmFlagCodes());
            assertFalse(v.has(VmFlag.NORESERVE), "hugetlb stays reserved: VmFlags " + v.vmFlagCodes());
        }
    }

    @Test
    void aTebibyteOfAnonymousMemoryMapsAndCostsOnlyThePagesWritten() {
        Overcommit oc = assumeRoomForATebibyte("aTebibyteOfAnonymousMemoryMapsAndCostsOnlyThePagesWritten");
        reservedTebibyteIsRefused(oc, HostRegion::anonymous, "1 TiB of private anonymous memory");

        long[] offsets = {0, GiB + 3 * P, 300 * GiB + 17 * P, 512 * GiB, 777 * GiB + 5 * P, TiB - P};
        HostRegion r = HostRegion.anonymous(TiB).create();
        long spanStart = r.address() - r.guardBytes(), spanEnd = r.address() + r.size() + r.guardBytes();
        try (Pagemap pm = Pagemap.openSelf()) {
            assertFalse(r.reserved());
            Vma v = vma(r);
            assertTrue(v.has(VmFlag.NORESERVE) && !v.has(VmFlag.ACCOUNT), "VmFlags " + v.vmFlagCodes());
            // Base pages whatever the THP setting, so that each write faults exactly one page in.
            Mman.madvise(r.address(), r.size(), Mman.MADV_NOHUGEPAGE);
            long rssBefore = ProcStatus.self().vmRss();

            MemorySegment s = r.segment();
            for (long o : offsets) s.set(ValueLayout.JAVA_LONG, o, 0x5EED_0000L + o);
            for (long o : offsets) assertEquals(0x5EED_0000L + o, s.get(ValueLayout.JAVA_LONG, o), "offset " + Fmt.hex(o));

            TreeSet<Long> written = new TreeSet<>();
            for (long o : offsets) {
                written.add(r.address() + o);
                assertTrue(PagemapEntry.isPresent(pm.readRaw(r.address() + o)), "written page at +" + Fmt.hex(o) + " present");
                if (o > 0) assertFalse(PagemapEntry.isPresent(pm.readRaw(r.address() + o - P)), "page before +" + Fmt.hex(o));
                if (o < r.size() - P) assertFalse(PagemapEntry.isPresent(pm.readRaw(r.address() + o + P)), "page after +" + Fmt.hex(o));
            }
            try (PagemapScan scan = PagemapScan.open(pm)) {
                if (scan.usesIoctl()) {
                    TreeSet<Long> present = new TreeSet<>();
                    for (PagemapScan.Region g : scan.scanAll(r.address(), r.address() + r.size(), 0, 0,
                            PagemapScan.PRESENT, 0, PagemapScan.PRESENT))
                        for (long a = g.start(); a < g.end(); a += P) present.add(a);
                    assertEquals(written, present, "PAGEMAP_SCAN: the present pages of the whole TiB are the written ones");
                } else {
                    System.out.println("note: no PAGEMAP_SCAN here; the written pages and their neighbours were read from pagemap");
                }
            }
            assertEquals(offsets.length * P, vma(r).rss(), "Rss of the 1 TiB VMA: the written pages only");
            long grew = ProcStatus.self().vmRss() - rssBefore;
            System.out.println("1 TiB anonymous region: " + offsets.length + " pages written, VMA Rss "
                    + Fmt.size(vma(r).rss()) + ", process VmRSS grew by " + Fmt.size(grew));
            // The process's own figure moves with the JVM too (JIT, GC): roughly the written pages.
            assertTrue(grew < offsets.length * P + 64 * MiB, "VmRSS grew by " + Fmt.size(grew));
        } finally {
            r.close();
        }
        Leaks.assertNothingMapped(spanStart, spanEnd);
    }

    @Test
    void aTebibyteOfSharedAnonymousMemoryMapsNoReserve() {
        Overcommit oc = assumeRoomForATebibyte("aTebibyteOfSharedAnonymousMemoryMapsNoReserve");
        reservedTebibyteIsRefused(oc, HostRegion::anonymousShared, "1 TiB of shared anonymous memory");
        HostRegion r = HostRegion.anonymousShared(TiB).create();
        long spanStart = r.address() - r.guardBytes(), spanEnd = r.address() + r.size() + r.guardBytes();
        try {
            assertTrue(vma(r).has(VmFlag.NORESERVE), "VmFlags " + vma(r).vmFlagCodes());
            Mman.madvise(r.address(), r.size(), Mman.MADV_NOHUGEPAGE);
            r.segment().set(ValueLayout.JAVA_LONG, 0, 1);
            r.segment().set(ValueLayout.JAVA_LONG, TiB - 8, 2);
            assertEquals(1, r.segment().get(ValueLayout.JAVA_LONG, 0));
            assertEquals(2, r.segment().get(ValueLayout.JAVA_LONG, TiB - 8));
            assertEquals(2 * P, vma(r).rss(), "Rss of the 1 TiB shared VMA: the two written pages");
        } finally {
            r.close();
        }
        Leaks.assertNothingMapped(spanStart, spanEnd);
    }

    /**
     * A memfd is never charged at mmap (the kernel does not charge shared file mappings there, and memfd_create
     * makes the shmem file VM_NORESERVE itself, charging its pages as they are allocated): 1 TiB maps even
     * reserved, in every overcommit mode. reserve(true) only changes the VMA's flag for a memfd.
     */
    @Test
    void aTebibyteMemfdMapsEvenReserved() {
        assumeAddressSpaceForATebibyte("aTebibyteMemfdMapsEvenReserved");
        HostRegion r = HostRegion.memfd(TiB).name("gm-tebibyte").reserve(true).create();
        long spanStart = r.address() - r.guardBytes(), spanEnd = r.address() + r.size() + r.guardBytes();
        try {
            Vma v = vma(r);
            assertFalse(v.has(VmFlag.NORESERVE) || v.has(VmFlag.ACCOUNT), "VmFlags " + v.vmFlagCodes());
            Mman.madvise(r.address(), r.size(), Mman.MADV_NOHUGEPAGE);
            r.segment().set(ValueLayout.JAVA_LONG, TiB / 2, 7);
            assertEquals(7, r.segment().get(ValueLayout.JAVA_LONG, TiB / 2));
            assertEquals(P, vma(r).rss());
        } finally {
            r.close();
        }
        Leaks.assertNothingMapped(spanStart, spanEnd);
        Leaks.assertNoMemfd("gm-tebibyte");
    }

    /**
     * A no-reserve region is not refused at mmap however large, so a prefault of more than RAM + swap could only
     * end in the OOM killer (seen on an 8 GiB arm64 guest, whose 48-bit address space took a 128 TiB shared
     * region): the builder refuses it before any step, and nothing is left mapped.
     */
    @Test
    void aPrefaultOfMoreThanRamAndSwapIsRefusedBeforeAnything() {
        Overcommit oc = Overcommit.now();
        long tooMuch = (oc.memTotal() + oc.swapTotal() + MiB) & -Posix.PAGE_SIZE;
        for (Supplier<RegionBuilder> kind : List.<Supplier<RegionBuilder>>of(() -> HostRegion.anonymous(tooMuch),
                () -> HostRegion.anonymousShared(tooMuch), () -> HostRegion.memfd(tooMuch))) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> kind.get().prefault(Prefault.Mode.WRITE).create());
            assertTrue(e.getMessage().contains("more than this machine's RAM + swap"), e.getMessage());
        }
        assertEquals(0, largestMapping() >= tooMuch ? 1 : 0, "nothing of that size was mapped");
        try (HostRegion small = HostRegion.anonymous(4 * Posix.PAGE_SIZE).prefault(Prefault.Mode.WRITE).create()) {
            assertEquals(4 * Posix.PAGE_SIZE, small.size(), "a prefault that fits is untouched by the check");
        }
    }

    /** The largest mapping of this process now, per /proc/self/maps. */
    private static long largestMapping() {
        try {
            long max = 0;
            for (String l : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/self/maps"))) {
                String[] r = l.substring(0, l.indexOf(' ')).split("-");
                max = Math.max(max, Long.parseUnsignedLong(r[1], 16) - Long.parseUnsignedLong(r[0], 16));
            }
            return max;
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }
}
