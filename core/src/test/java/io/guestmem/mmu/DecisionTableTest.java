package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.mmu.RefcountedPage.Kind;
import io.guestmem.mmu.RefcountedPage.Path;
import io.guestmem.mmu.RefcountedPage.Refcount;
import io.guestmem.procfs.KPageFlag;
import org.junit.jupiter.api.Test;

/** The pure parts of the tables: KVM's pfn encoding, the remapped path's policies, the refcount rules. */
class DecisionTableTest {

    @Test
    void kvmPfnEncodingMatchesKvmHost() {
        assertEquals(0x7FF0000000000000L, KvmPfn.ERR_MASK);
        assertEquals(0xFFF0000000000000L, KvmPfn.NOSLOT_MASK);
        assertEquals(0x8000000000000000L, KvmPfn.NOSLOT);
        for (PfnError e : PfnError.values()) {
            assertEquals(e, PfnError.of(e.code));
            assertTrue(KvmPfn.isErrorOrNoslot(e.code));
            assertEquals(e != PfnError.NOSLOT, KvmPfn.isError(e.code));
        }
        assertEquals(KvmPfn.ERR_MASK + 4, PfnError.NEEDS_IO.code);
        for (long v : new long[] {0, 1, 0x123456, KvmPfn.HIDDEN, KvmPfn.NOT_OBSERVABLE}) {
            assertFalse(KvmPfn.isErrorOrNoslot(v));
            assertNull(PfnError.of(v));
        }
        assertFalse(KvmPfn.isRealPfn(KvmPfn.HIDDEN));
        assertFalse(KvmPfn.isRealPfn(KvmPfn.NOT_OBSERVABLE));
    }

    @Test
    void remappedPath() {
        Refcount none = Refcount.NO_PAGE;
        // 17: pin refused unless unsafe
        assertEquals(PfnError.FAULT, FollowPfn.remappedDecision(true, true, false, true, false, true, none));
        assertNull(FollowPfn.remappedDecision(true, true, true, false, false, true, none));
        // 18: write on a read-only pte
        assertEquals(PfnError.RO_FAULT, FollowPfn.remappedDecision(false, true, false, false, true, false, none));
        assertNull(FollowPfn.remappedDecision(false, true, false, false, true, true, none));
        // 19: a non-refcountable struct page needs allow_non_refcounted_struct_page
        assertEquals(PfnError.FAULT, FollowPfn.remappedDecision(false, true, false, false, false, true,
                Refcount.STRUCT_PAGE_NOT_REFCOUNTED));
        assertNull(FollowPfn.remappedDecision(false, true, false, true, false, true, Refcount.STRUCT_PAGE_NOT_REFCOUNTED));
        // 20: unguarded non-refcounted → FAULT, even over RO_FAULT; unsafe allows it
        assertEquals(PfnError.FAULT, FollowPfn.remappedDecision(false, false, false, false, true, false, none));
        assertEquals(PfnError.RO_FAULT, FollowPfn.remappedDecision(false, false, true, false, true, false, none));
        // a refcounted remapped page (v9 get_page_unless_zero succeeded) needs no guard
        assertNull(FollowPfn.remappedDecision(false, false, false, false, false, true, Refcount.REFCOUNTED));
    }

    /** The v9 patch's order: RO_FAULT jumps to out: before the reference, so a struct page there is not refcounted. */
    @Test
    void remappedPathV9Patch() {
        Refcount none = Refcount.NO_PAGE, page = Refcount.REFCOUNTED, zero = Refcount.STRUCT_PAGE_NOT_REFCOUNTED;
        // guarded, allowUnsafe, allowNonRefcounted, write, pteWritable, refcount
        assertNull(FollowPfn.remappedDecisionV9Patch(false, false, false, false, true, page), "refcounted: no guard needed");
        assertNull(FollowPfn.remappedDecisionV9Patch(true, false, false, true, true, none), "guarded, no page");
        assertEquals(PfnError.FAULT, FollowPfn.remappedDecisionV9Patch(false, false, false, false, true, none), "unguarded, no page");
        assertNull(FollowPfn.remappedDecisionV9Patch(false, true, false, false, true, none), "allow_unsafe_mappings");
        // the write on a read-only pte of a refcountable struct page: -EFAULT, not RO_FAULT
        assertEquals(PfnError.FAULT, FollowPfn.remappedDecisionV9Patch(true, false, false, true, false, page));
        assertEquals(PfnError.FAULT, FollowPfn.remappedDecisionV9Patch(true, true, false, true, false, page));
        assertEquals(PfnError.RO_FAULT, FollowPfn.remappedDecisionV9Patch(true, false, true, true, false, page));
        assertEquals(PfnError.FAULT, FollowPfn.remappedDecisionV9Patch(false, false, true, true, false, page));
        assertEquals(PfnError.RO_FAULT, FollowPfn.remappedDecisionV9Patch(false, true, true, true, false, page));
        // no struct page: RO_FAULT when guarded (as 6.13), FAULT unguarded
        assertEquals(PfnError.RO_FAULT, FollowPfn.remappedDecisionV9Patch(true, false, false, true, false, none));
        assertEquals(PfnError.FAULT, FollowPfn.remappedDecisionV9Patch(false, false, false, true, false, none));
        // a struct page get_page_unless_zero cannot take
        assertEquals(PfnError.FAULT, FollowPfn.remappedDecisionV9Patch(true, false, false, false, true, zero));
        assertNull(FollowPfn.remappedDecisionV9Patch(true, false, true, false, true, zero));
        // the rule dispatcher: v9 has no FOLL_PIN, a pin is an unguarded use; 6.13 refuses it outright
        assertNull(FollowPfn.remappedDecision(KernelRule.V9_PATCH, true, true, false, false, false, true, page));
        assertEquals(PfnError.FAULT, FollowPfn.remappedDecision(KernelRule.V9_PATCH, true, true, false, false, false, true, none));
        assertEquals(PfnError.FAULT, FollowPfn.remappedDecision(KernelRule.LINUX_6_13, true, true, false, false, false, true, page));
        assertEquals(PfnError.RO_FAULT, FollowPfn.remappedDecision(KernelRule.LINUX_6_13, false, true, false, false, true, false,
                RefcountedPage.linux613Rule(Kind.NORMAL, Path.REMAPPED)));
        for (boolean[] c : allFlags(7)) {
            assertEquals(FollowPfn.remappedDecision(c[0], c[1], c[2], c[3], c[4], c[5], c[6] ? page : none),
                    FollowPfn.remappedDecision(KernelRule.LINUX_6_13, c[0], c[1], c[2], c[3], c[4], c[5], c[6] ? page : none),
                    "LINUX_6_13 is the unchanged 6.13 decision");
        }
    }

    private static java.util.List<boolean[]> allFlags(int n) {
        java.util.List<boolean[]> out = new java.util.ArrayList<>();
        for (int m = 0; m < 1 << n; m++) {
            boolean[] b = new boolean[n];
            for (int i = 0; i < n; i++) b[i] = (m >> i & 1) != 0;
            out.add(b);
        }
        return out;
    }

    /** The private guest_memfd pfn is a success value, never a pfn, never an error. */
    @Test
    void guestMemfdPrivatePfnIsNeitherAPfnNorAnError() {
        assertFalse(KvmPfn.isRealPfn(KvmPfn.GUEST_MEMFD_PRIVATE));
        assertFalse(KvmPfn.isErrorOrNoslot(KvmPfn.GUEST_MEMFD_PRIVATE));
        assertNull(PfnError.of(KvmPfn.GUEST_MEMFD_PRIVATE));
        assertTrue(KvmPfn.describe(KvmPfn.GUEST_MEMFD_PRIVATE).contains("guest_memfd"));
        assertTrue(PfnObservability.GUEST_MEMFD_PRIVATE.reason().contains("never host-mapped"));
    }

    @Test
    void classificationFromKpageflags() {
        long zero = KPageFlag.maskOf(KPageFlag.ZERO_PAGE, KPageFlag.RESERVED, KPageFlag.REFERENCED); // as read here
        assertEquals(Kind.ZERO_PAGE, RefcountedPage.classify(zero));
        assertEquals(Kind.RESERVED, RefcountedPage.classify(KPageFlag.RESERVED.mask));
        assertEquals(Kind.NO_STRUCT_PAGE, RefcountedPage.classify(KPageFlag.NOPAGE.mask));
        assertEquals(Kind.FREE, RefcountedPage.classify(KPageFlag.BUDDY.mask));
        assertEquals(Kind.HUGETLB_TAIL, RefcountedPage.classify(KPageFlag.maskOf(KPageFlag.HUGE, KPageFlag.COMPOUND_TAIL)));
        assertEquals(Kind.HUGETLB_HEAD, RefcountedPage.classify(KPageFlag.maskOf(KPageFlag.HUGE, KPageFlag.COMPOUND_HEAD)));
        assertEquals(Kind.THP_TAIL, RefcountedPage.classify(KPageFlag.maskOf(KPageFlag.THP, KPageFlag.COMPOUND_TAIL)));
        assertEquals(Kind.COMPOUND_TAIL, RefcountedPage.classify(KPageFlag.COMPOUND_TAIL.mask));
        assertEquals(Kind.NORMAL, RefcountedPage.classify(KPageFlag.maskOf(KPageFlag.ANON, KPageFlag.LRU)));
        assertEquals(Kind.NOT_OBSERVED, RefcountedPage.classify(RefcountedPage.UNKNOWN_FLAGS));
        // huge zero page: ZERO_PAGE|THP|COMPOUND_TAIL is the zero page
        assertEquals(Kind.ZERO_PAGE, RefcountedPage.classify(KPageFlag.maskOf(KPageFlag.ZERO_PAGE, KPageFlag.THP, KPageFlag.COMPOUND_TAIL)));
    }

    @Test
    void seedAndLinux613Rules() {
        for (Kind k : Kind.values()) {
            Refcount gup = RefcountedPage.v9Rule(k, Path.GUP);
            assertTrue(gup.refcounted(), "v9: GUP pages are always refcounted: " + k);
            assertEquals(gup, RefcountedPage.linux613Rule(k, Path.GUP));
            assertEquals(Refcount.NO_PAGE, RefcountedPage.linux613Rule(k, Path.REMAPPED), "6.13: remapped never: " + k);
        }
        assertEquals(Refcount.NO_PAGE, RefcountedPage.v9Rule(Kind.NO_STRUCT_PAGE, Path.REMAPPED));
        assertEquals(Refcount.NO_PAGE, RefcountedPage.v9Rule(Kind.RESERVED, Path.REMAPPED));
        assertEquals(Refcount.REFCOUNTED, RefcountedPage.v9Rule(Kind.ZERO_PAGE, Path.REMAPPED));
        assertEquals(Refcount.STRUCT_PAGE_NOT_REFCOUNTED, RefcountedPage.v9Rule(Kind.FREE, Path.REMAPPED));
        assertEquals(Refcount.REFCOUNTED_VIA_HEAD, RefcountedPage.v9Rule(Kind.HUGETLB_TAIL, Path.REMAPPED));
        assertEquals(Refcount.REFCOUNTED_VIA_HEAD, RefcountedPage.v9Rule(Kind.THP_TAIL, Path.GUP));
        assertEquals(Refcount.REFCOUNTED, RefcountedPage.v9Rule(Kind.NORMAL, Path.REMAPPED));
    }
}
