package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
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
import org.junit.jupiter.api.AutoClose;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** THP, hugetlb 2M/1G and a real VM_PFNMAP range through follow_pfn and the host mapping level. */
class HugeAndPfnmapTest {
    @AutoClose // unmaps its regions and closes its readers after each test
    private final Fixture f = new Fixture();
    private static final long PAGE = Fixture.PAGE;

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
        // Linux 6.13's rule, as KVM's module parameters fix it: allow_unsafe_mappings off, then on.
        FollowPfn fp = f.followPfn(FollowPfnCollaborators.standalone(), FollowPfnOptions.of(KernelRule.LINUX_6_13));
        FollowPfn unsafe = f.followPfn(FollowPfnCollaborators.standalone(),
                FollowPfnOptions.of(KernelRule.LINUX_6_13).withAllowUnsafeMappings(true));

        FollowPfnResult guarded = fp.follow(FollowPfnRequest.read(g).withLevel(true));
        System.out.println("PFNMAP: " + guarded);
        assertTrue(guarded.ok(), guarded::toString);
        assertEquals(Path.REMAPPED, guarded.path());
        assertEquals(PfnObservability.NOT_OBSERVABLE, guarded.observability());
        assertEquals(KvmPfn.NOT_OBSERVABLE, guarded.pfn());
        assertFalse(KvmPfn.isError(guarded.pfn()));
        assertNull(guarded.reference(), "never refcounted");
        assertFalse(guarded.writable(), "the ring is mapped read-only");
        assertEquals(0, fp.references().size());

        FollowPfnRequest unguarded = FollowPfnRequest.read(g).withGuarded(false);
        assertEquals(PfnError.FAULT, fp.follow(unguarded).error());
        assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.read(g).withPin(true)).error(), "pin refused");
        assertEquals(PfnError.RO_FAULT, fp.follow(FollowPfnRequest.write(g)).error(), "read-only pte");
        assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.write(g).withGuarded(false)).error(),
                "v9: an unguarded non-refcounted pfn is FAULT even before RO_FAULT");

        assertTrue(unsafe.follow(unguarded).ok());
        assertTrue(unsafe.follow(FollowPfnRequest.read(g).withPin(true)).ok());
        assertFalse(fp.follow(unguarded).ok(), "the other follow_pfn's allow_unsafe_mappings is its own");
        // noWait goes to the remapped path too (the VMA decides before FOLL_NOWAIT)
        assertEquals(Path.REMAPPED, fp.follow(FollowPfnRequest.read(g).withNoWait(true)).path());
    }

    /**
     * The v9 patch's {@code hva_to_pfn_remapped} on a real PFNMAP range whose ptes map struct pages (a perf
     * ring: page-allocator pages, {@link RemappedPages}): a refcountable page is refcounted (a reference held,
     * no guard needed), and a write fault on the read-only pte takes the RO_FAULT branch before the reference,
     * so it ends as FAULT without allow_non_refcounted_struct_page, where 6.13 answers RO_FAULT.
     */
    @Test
    void perfRingUnderTheV9Patch() {
        io.guestmem.host.Pfnmap.unavailableReason().ifPresent(why -> {
            System.out.println("SKIP perfRingUnderTheV9Patch: " + why);
            org.junit.jupiter.api.Assumptions.abort(why);
        });
        HostRegion ring = f.own(HostRegion.perfRing(8).create());
        Vma vma = Smaps.vmaOf(ring.address());
        assertTrue(vma.has(VmFlag.PFNMAP), vma::toString);
        assertEquals(RemappedPages.PERF_EVENT, vma.name(), "the ring's owner, as /proc/self/maps names it");
        assertTrue(vma.perms().startsWith("r-"), "mapped read-only: " + vma.perms());
        Memslot s = f.slot(ring, 0);
        long g = s.baseGfn() + 1;
        FollowPfn v9 = f.followPfn(FollowPfnCollaborators.standalone(), FollowPfnOptions.of(KernelRule.V9_PATCH));
        FollowPfn v9Unsafe = f.followPfn(FollowPfnCollaborators.standalone(),
                FollowPfnOptions.of(KernelRule.V9_PATCH).withAllowUnsafeMappings(true));
        FollowPfn l613 = f.followPfn(FollowPfnCollaborators.standalone(), FollowPfnOptions.of(KernelRule.LINUX_6_13));
        assertEquals(KernelRule.V9_PATCH, f.fp.options().rule(), "the patch is the default");

        // reads: the struct page is refcounted (kvm_follow_refcounted_pfn), so no guard is needed
        for (FollowPfnRequest rq : new FollowPfnRequest[] {FollowPfnRequest.read(g), FollowPfnRequest.read(g).withGuarded(false),
                FollowPfnRequest.read(g).withPin(true)}) {
            FollowPfnResult r = v9.follow(rq);
            assertTrue(r.ok(), rq + " → " + r);
            assertEquals(Path.REMAPPED, r.path());
            assertEquals(KvmPfn.NOT_OBSERVABLE, r.pfn(), "the pfn stays unobservable");
            assertNotNull(r.reference(), "v9 holds a reference on a refcountable struct page: " + r);
            assertEquals(1, v9.references().count(g));
            v9.releaseFaultinPage(r, true, false);
            assertEquals(0, v9.references().size());
        }
        assertNull(l613.follow(FollowPfnRequest.read(g)).reference(), "6.13: remapped pfns are never refcounted");

        // a write on the read-only pte: RO_FAULT branch first, before get_page_unless_zero
        assertEquals(PfnError.FAULT, v9.follow(FollowPfnRequest.write(g)).error(),
                "v9: the page was not refcounted on the RO_FAULT branch → -EFAULT");
        assertEquals(PfnError.RO_FAULT, l613.follow(FollowPfnRequest.write(g)).error(), "6.13: RO_FAULT");
        assertEquals(PfnError.RO_FAULT, v9.follow(FollowPfnRequest.write(g).withAllowNonRefcountedStructPage(true)).error(),
                "allow_non_refcounted_struct_page lets RO_FAULT through when guarded");
        assertEquals(PfnError.FAULT, v9.follow(FollowPfnRequest.write(g).withAllowNonRefcountedStructPage(true)
                .withGuarded(false)).error(), "unguarded and not refcounted: -EFAULT");
        assertEquals(PfnError.RO_FAULT, v9Unsafe.follow(FollowPfnRequest.write(g).withAllowNonRefcountedStructPage(true)
                .withGuarded(false)).error(), "allow_unsafe_mappings lifts the guard");
        assertEquals(PfnError.FAULT, v9Unsafe.follow(FollowPfnRequest.write(g)).error(),
                "allow_unsafe_mappings does not lift allow_non_refcounted_struct_page");
        assertEquals(0, v9.references().size() + v9Unsafe.references().size(), "errors hold nothing");
    }
}
