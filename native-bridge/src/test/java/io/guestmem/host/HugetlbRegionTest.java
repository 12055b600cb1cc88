package io.guestmem.host;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.guestmem.sys.Capabilities;
import java.lang.foreign.ValueLayout;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.opentest4j.TestAbortedException;

/**
 * hugetlb regions on the kernel's real pools. Each test raises the pool by what it needs and the
 * reservation puts exactly that back, even on failure (another helper's tests may use the pools too).
 */
class HugetlbRegionTest {
    static final long MiB = 1 << 20;

    private static HugePageSize sizeOrSkip(long bytes) {
        assumeTrue(HugePagePools.sizes().stream().anyMatch(s -> s.bytes() == bytes),
                () -> "this kernel has no hugetlb pool of " + bytes + " bytes: " + HugePagePools.sizes());
        return HugePagePools.size(bytes);
    }

    private static void assumeRoot() {
        assumeTrue(Capabilities.has(Capabilities.CAP_SYS_ADMIN), "raising hugetlb pools needs root (CAP_SYS_ADMIN)");
    }

    @Test
    void sizesComeFromSysfs() {
        for (HugePageSize s : HugePagePools.sizes()) {
            HugePagePools.Pool p = HugePagePools.pool(s);
            assertTrue(p.total() >= 0 && p.free() <= p.total() && p.reserved() <= p.free(), p.toString());
        }
        assertThrows(IllegalArgumentException.class, () -> HugePagePools.size(3 * MiB));
    }

    @Test
    void hugetlb2MRegionAndMemfd() {
        HugePageSize twoM = sizeOrSkip(2 * MiB);
        assumeRoot();
        HugePagePools.Pool before = HugePagePools.pool(twoM);
        long totalBefore = before.total();
        try (HugePagePools.Reservation res = HugePagePools.raise(twoM, 4)) {
            // 2M pages are not gigantic: the raise lets 4 more be allocated (as surplus pages) and allocates none yet
            assertTrue(res.surplus(), "a 2M raise uses surplus pages");
            assertEquals(before.obtainable() + 4, HugePagePools.pool(twoM).obtainable());
            assertEquals(before.overcommit() + 4, HugePagePools.pool(twoM).overcommit());
            HostRegion r = HostRegion.hugetlb(4 * MiB, twoM).create();
            long start = r.address() - r.guardBytes(), end = r.address() + r.size() + r.guardBytes();
            try {
                assertEquals(before.surplus() + Math.max(0, 2 - before.available()), HugePagePools.pool(twoM).surplus(),
                        "the mapping's reservation took surplus pages where free ones ran out: " + HugePagePools.pool(twoM));
                assertEquals(Backing.HUGETLB_2M, r.backing());
                assertEquals(2 * MiB, r.pageSize());
                assertEquals(0, r.address() % (2 * MiB));
                assertEquals(2048, ProcText.smapsKb(r.address(), "KernelPageSize"));
                assertTrue(ProcText.vmFlags(r.address()).contains("ht"));
                assertEquals("---p", ProcText.mapOf(r.address() - 1).perms(), "guard below");
                assertEquals("---p", ProcText.mapOf(r.address() + r.size()).perms(), "guard above");
                r.segment().set(ValueLayout.JAVA_LONG, 3 * MiB, 77);
                assertEquals(77, r.segment().get(ValueLayout.JAVA_LONG, 3 * MiB));
            } finally {
                r.close();
            }
            Leaks.assertNothingMapped(start, end);
            try (HostRegion m = HostRegion.memfdHugetlb(2 * MiB, twoM).prefault(Prefault.Mode.WRITE).name("gm-huge").create()) {
                assertEquals(Backing.MEMFD_HUGETLB, m.backing());
                assertTrue(m.fd().isPresent());
                assertEquals(2048, ProcText.smapsKb(m.address(), "KernelPageSize"));
                // hugetlb pages are counted in smaps' *_Hugetlb fields, not Rss
                assertEquals(2048, ProcText.smapsKb(m.address(), "Shared_Hugetlb") + ProcText.smapsKb(m.address(), "Private_Hugetlb"),
                        "the huge page is faulted in");
            }
            Leaks.assertNoMemfd("gm-huge");
        }
        HugePagePools.Pool after = HugePagePools.pool(twoM);
        assertEquals(totalBefore, after.total(), "pool restored");
        assertEquals(before.overcommit(), after.overcommit(), "overcommit limit restored");
        assertEquals(before.surplus(), after.surplus(), "the kernel freed the surplus pages with the mappings");
    }

    @Test
    void unalignedHugetlbSizeIsRejected() {
        HugePageSize twoM = sizeOrSkip(2 * MiB);
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> HostRegion.hugetlb(3 * MiB, twoM).create());
        assertTrue(e.getMessage().contains("not a multiple of the 2 MiB page size"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> HostRegion.hugetlb(2 * MiB, new HugePageSize(8 * MiB)).create());
    }

    @Test
    void exhaustedPoolFailsAtCreationWithAClearMessageAndNoLeak() {
        HugePageSize twoM = sizeOrSkip(2 * MiB);
        long avail = HugePagePools.pool(twoM).available();
        long asked = avail + 2;
        Set<Leaks.Range> before = Leaks.snapshot();
        HugePagePoolExhaustedException e = assertThrows(HugePagePoolExhaustedException.class,
                () -> HostRegion.hugetlb(asked * 2 * MiB, twoM).create());
        assertEquals("ENOMEM", e.errnoName());
        assertEquals(asked, e.pagesAsked());
        assertEquals(avail, e.pagesFree());
        String msg = e.getMessage();
        assertTrue(msg.contains("2M") && msg.contains("cannot serve " + asked + " pages") && msg.contains(avail + " free"), msg);
        assertTrue(msg.contains("echo ") && msg.contains("> /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"), msg);
        Leaks.assertNoNewMappingSized(before, asked * 2 * MiB, asked * 2 * MiB + 4 * MiB);

        HugePagePoolExhaustedException m = assertThrows(HugePagePoolExhaustedException.class,
                () -> HostRegion.memfdHugetlb(asked * 2 * MiB, twoM).name("gm-exhausted").create());
        assertEquals(asked, m.pagesAsked());
        Leaks.assertNoMemfd("gm-exhausted");
        Leaks.assertNoNewMappingSized(before, asked * 2 * MiB, asked * 2 * MiB + 4 * MiB);
    }

    @Test
    void hugetlb1GWhereThePoolCanBeRaised() {
        HugePageSize oneG = sizeOrSkip(1L << 30);
        assumeRoot();
        long totalBefore = HugePagePools.pool(oneG).total();
        HugePagePools.Reservation res;
        try {
            res = HugePagePools.raise(oneG, 1);
        } catch (IllegalStateException e) {
            System.out.println("skipping 1G region: " + e.getMessage());
            throw new TestAbortedException("1G pool cannot be raised here: " + e.getMessage());
        }
        long freeAfterRaise = HugePagePools.pool(oneG).free();
        try (res; HostRegion r = HostRegion.hugetlb(1L << 30, oneG).prefault(Prefault.Mode.WRITE).create()) {
            assertEquals(Backing.HUGETLB_1G, r.backing());
            assertEquals(1L << 30, r.pageSize());
            assertEquals(0, r.address() % (1L << 30));
            assertEquals(1 << 20, ProcText.smapsKb(r.address(), "KernelPageSize"));
            assertEquals(freeAfterRaise - 1, HugePagePools.pool(oneG).free(), "the prefaulted 1G page came from the pool");
            r.segment().set(ValueLayout.JAVA_LONG, (1L << 30) - 8, 5);
            assertEquals(5, r.segment().get(ValueLayout.JAVA_LONG, (1L << 30) - 8));
        }
        assertEquals(totalBefore, HugePagePools.pool(oneG).total(), "pool restored");
    }
}
