package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.host.HugePageSize;
import io.guestmem.memslot.Memslot;
import io.guestmem.mmu.FollowPfnResult.Path;
import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.Smaps;
import io.guestmem.procfs.Vma;
import io.guestmem.procfs.VmFlag;

import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.AutoClose;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** THP, hugetlb 2M/1G and a real VM_PFNMAP range through follow_pfn and the host mapping level. */
class HugeAndPfnmapTest {
    @AutoClose // unmaps its regions and closes its readers after each test
    private final Fixture f = new Fixture();
    private static final long PAGE = Fixture.PAGE;

    @AfterEach
    void resetUnsafeMappings() {
        FollowPfn.setAllowUnsafeMappings(false);
    }

    @Test
    void transparentHugePage() {
        long pmd = HugePagePools.thpSize();
        HostRegion r = f.own(HostRegion.thp(2 * pmd).create());
        Memslot s = f.slot(r, 0);
        HostMappingLevel levels = f.fp.levels();
        long gfn = f.gfn(s, pmd + 5 * PAGE);
        assertEquals(MappingLevel.PAGE, levels.hostMappingLevel(r.address() + pmd), "non-present answers 4K");

        FollowPfnResult w = f.fp.follow(FollowPfnRequest.write(gfn).withLevel(true));
        System.out.println("THP: " + w + " " + KPageFlag.decode(w.page().kpageflags()));
        f.assertPfnIsPagemaps(w);
        assertEquals(RefcountedPage.Kind.THP_TAIL, w.page().kind());
        assertEquals(RefcountedPage.Refcount.REFCOUNTED_VIA_HEAD, w.page().linux613Rule(RefcountedPage.Path.GUP));
        assertEquals(MappingLevel.PMD, w.level());
        assertEquals(MappingLevel.PMD, levels.hostMappingLevel(r.address() + pmd));
        assertEquals(MappingLevel.PMD, levels.maxMappingLevel(s, gfn));
        FollowPfnResult head = f.fp.follow(FollowPfnRequest.read(f.gfn(s, pmd)));
        assertEquals(RefcountedPage.Kind.THP_HEAD, head.page().kind());
        assertEquals(w.pfn() - 5, head.pfn(), "one folio: contiguous pfns");
        assertEquals(MappingLevel.PAGE, levels.hostMappingLevel(r.address()), "the other PMD is still empty");

        // the same THP behind a slot whose gfn is not congruent with the hva modulo 2M: capped to 4K
        Memslot mis = f.slotAt(s.endGfn() + (1L << 18) + 1, r.address(), r.size(), 0);
        assertEquals(MappingLevel.PAGE, levels.maxMappingLevel(mis, f.gfn(mis, pmd)));
        // dirty logging caps it too; a locked slot too
        Memslot logged = f.slot(r, Memslot.LOG_DIRTY_PAGES);
        assertEquals(MappingLevel.PAGE, levels.maxMappingLevel(logged, f.gfn(logged, pmd)));
        HostMappingLevel locked = new HostMappingLevel(f.fp.view(), levels.sizes(), slot -> slot.id() == s.id());
        assertEquals(MappingLevel.PAGE, locked.maxMappingLevel(s, gfn));
        assertEquals(MappingLevel.PMD, levels.maxMappingLevel(s, gfn), "SlotLocks.NONE: not locked");
    }

    @Test
    void hugetlbAtThePmdSize() {
        // The hugetlb size a PMD maps: 2M on x86-64 and 4K arm64, 32M on 16K arm64 (there 2M is contiguous-PTE).
        long pmd = LevelSizes.host().pmdSize();
        HugePageSize size = HugePagePools.sizes().stream().filter(h -> h.bytes() == pmd).findFirst().orElse(null);
        Assumptions.assumeTrue(size != null, "this kernel offers no hugetlb pool of the PMD size " + pmd);
        try (HugePagePools.Reservation res = HugePagePools.raise(size, 2)) {
            HostRegion r = f.own(HostRegion.hugetlb(2 * size.bytes(), size).create());
            Memslot s = f.slot(r, 0);
            long tailGfn = f.gfn(s, size.bytes() + 7 * PAGE);
            assertEquals(MappingLevel.PAGE, f.fp.levels().hostMappingLevel(r.address() + size.bytes()));
            FollowPfnResult w = f.fp.follow(FollowPfnRequest.write(tailGfn).withLevel(true));
            System.out.println("hugetlb " + size + ": " + w + " " + KPageFlag.decode(w.page().kpageflags()));
            f.assertPfnIsPagemaps(w);
            assertEquals(RefcountedPage.Kind.HUGETLB_TAIL, w.page().kind());
            assertEquals(MappingLevel.PMD, w.level());
            assertEquals(MappingLevel.PMD, f.fp.levels().maxMappingLevel(s, tailGfn));
            FollowPfnResult head = f.fp.follow(FollowPfnRequest.read(f.gfn(s, size.bytes())));
            assertEquals(RefcountedPage.Kind.HUGETLB_HEAD, head.page().kind());
            assertEquals(w.pfn() - 7, head.pfn());
            // a slot that starts 16 pages into the first huge page: that block is cut → 4K there, even
            // though the host maps it with a PMD; the second block lies wholly inside → PMD
            r.segment().set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
            assertEquals(MappingLevel.PMD, f.fp.levels().hostMappingLevel(r.address() + 16 * PAGE));
            Memslot cut = f.slotAt((1L << 30) / PAGE * 8 + 16, r.address() + 16 * PAGE, r.size() - 16 * PAGE, 0);
            assertEquals(MappingLevel.PAGE, f.fp.levels().maxMappingLevel(cut, cut.baseGfn()));
            assertEquals(MappingLevel.PMD, f.fp.levels().maxMappingLevel(cut, f.gfn(cut, size.bytes() - 16 * PAGE + 7 * PAGE)));
            for (PageReference ref : f.fp.references().unreleased()) ref.release();
            r.close(); // before the reservation is returned, also when an assertion failed (finally below)
        } finally {
            f.close();
        }
    }

    @Test
    void hugetlb1G() {
        HugePageSize size = HugePagePools.sizes().stream().filter(h -> h.bytes() == 1L << 30).findFirst().orElse(null);
        Assumptions.assumeTrue(size != null, "this kernel offers no 1G hugetlb pool");
        HugePagePools.Reservation res;
        try {
            res = HugePagePools.raise(size, 1);
        } catch (IllegalStateException e) {
            Assumptions.abort("cannot raise the 1G pool now (no free contiguous GiB): " + e.getMessage());
            return;
        }
        try (res) {
            HostRegion r = f.own(HostRegion.hugetlb(size.bytes(), size).create());
            Memslot s = f.slot(r, 0);
            long gfn = f.gfn(s, 3 * (2L << 20) + 9 * PAGE);
            FollowPfnResult w = f.fp.follow(FollowPfnRequest.write(gfn).withLevel(true));
            System.out.println("hugetlb 1G: " + w);
            f.assertPfnIsPagemaps(w);
            assertEquals(RefcountedPage.Kind.HUGETLB_TAIL, w.page().kind());
            // PUD where 1G is a PUD block (x86-64, 4K arm64); 16K arm64 maps it as contiguous PMDs.
            LevelSizes ls = LevelSizes.host();
            MappingLevel top = ls.levelFor(1L << 30);
            assertEquals(ls.pudSize() == 1L << 30 ? MappingLevel.PUD : MappingLevel.PMD, top);
            assertEquals(top, w.level());
            assertEquals(top, f.fp.levels().maxMappingLevel(s, gfn));
            // congruent modulo the PMD size but not 1G: PMD at most
            Memslot half = f.slotAt(s.endGfn() + (1L << 18) + ls.pages(MappingLevel.PMD), r.address(), r.size(), 0);
            assertEquals(MappingLevel.PMD, f.fp.levels().maxMappingLevel(half, f.gfn(half, 3 * (2L << 20))));
            for (PageReference ref : f.fp.references().unreleased()) ref.release();
            r.close();
        } finally {
            f.close();
        }
    }

    @Test
    void perfRingIsARealPfnmapRange() {
        io.guestmem.host.Pfnmap.unavailableReason().ifPresent(why -> {
            System.out.println("SKIP perfRingIsARealPfnmapRange: " + why);
            org.junit.jupiter.api.Assumptions.abort(why);
        });
        HostRegion ring = f.own(HostRegion.perfRing(8).create());
        assertEquals(Backing.PFNMAP, ring.backing());
        Vma vma = Smaps.vmaOf(ring.address());
        assertTrue(vma.has(VmFlag.PFNMAP) && vma.has(VmFlag.IO), vma::toString);
        ring.segment().get(ValueLayout.JAVA_BYTE, 0); // present in the kernel's tables, invisible to pagemap
        assertFalse(f.present(ring.address()), "pagemap hides PFNMAP pages");
        Memslot s = f.slot(ring, 0);
        long g = s.baseGfn() + 1;

        FollowPfnResult guarded = f.fp.follow(FollowPfnRequest.read(g).withLevel(true));
        System.out.println("PFNMAP: " + guarded);
        assertTrue(guarded.ok(), guarded::toString);
        assertEquals(Path.REMAPPED, guarded.path());
        assertEquals(PfnObservability.NOT_OBSERVABLE, guarded.observability());
        assertEquals(KvmPfn.NOT_OBSERVABLE, guarded.pfn());
        assertFalse(KvmPfn.isError(guarded.pfn()));
        assertNull(guarded.reference(), "never refcounted");
        assertFalse(guarded.writable(), "the ring is mapped read-only");
        assertEquals(0, f.fp.references().size());

        FollowPfnRequest unguarded = FollowPfnRequest.read(g).withGuarded(false);
        assertEquals(PfnError.FAULT, f.fp.follow(unguarded).error());
        assertEquals(PfnError.FAULT, f.fp.follow(FollowPfnRequest.read(g).withPin(true)).error(), "pin refused");
        assertEquals(PfnError.RO_FAULT, f.fp.follow(FollowPfnRequest.write(g)).error(), "read-only pte");
        assertEquals(PfnError.FAULT, f.fp.follow(FollowPfnRequest.write(g).withGuarded(false)).error(),
                "v9: an unguarded non-refcounted pfn is FAULT even before RO_FAULT");

        FollowPfn.setAllowUnsafeMappings(true);
        assertTrue(f.fp.follow(unguarded).ok());
        assertTrue(f.fp.follow(FollowPfnRequest.read(g).withPin(true)).ok());
        FollowPfn.setAllowUnsafeMappings(false);
        // noWait goes to the remapped path too (the VMA decides before FOLL_NOWAIT)
        assertEquals(Path.REMAPPED, f.fp.follow(FollowPfnRequest.read(g).withNoWait(true)).path());
    }
}
