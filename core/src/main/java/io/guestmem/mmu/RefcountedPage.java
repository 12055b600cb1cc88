package io.guestmem.mmu;

import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.KsmStat;

/**
 * The page behind a pfn as {@code /proc/kpageflags} describes it, and whether KVM would hold a reference on it.
 *
 * <h2>Kinds (from kpageflags, first matching row wins)</h2>
 * <table>
 * <caption>kpageflags to {@link Kind}</caption>
 * <tr><th>kpageflags</th><th>{@link Kind}</th></tr>
 * <tr><td>pfn not visible (PFNMAP, hidden) or kpageflags unreadable</td><td>NOT_OBSERVED</td></tr>
 * <tr><td>NOPAGE</td><td>NO_STRUCT_PAGE ({@code !pfn_valid})</td></tr>
 * <tr><td>ZERO_PAGE (also the huge zero page: ZERO_PAGE|THP|COMPOUND_*)</td><td>ZERO_PAGE</td></tr>
 * <tr><td>RESERVED</td><td>RESERVED</td></tr>
 * <tr><td>BUDDY or OFFLINE (refcount 0)</td><td>FREE</td></tr>
 * <tr><td>HUGE + COMPOUND_HEAD / COMPOUND_TAIL</td><td>HUGETLB_HEAD / HUGETLB_TAIL</td></tr>
 * <tr><td>THP + COMPOUND_HEAD / COMPOUND_TAIL</td><td>THP_HEAD / THP_TAIL</td></tr>
 * <tr><td>COMPOUND_HEAD / COMPOUND_TAIL (other large folios)</td><td>COMPOUND_HEAD / COMPOUND_TAIL</td></tr>
 * <tr><td>anything else</td><td>NORMAL</td></tr>
 * </table>
 *
 * <h2>Refcounting: v9 (kvm_pfn_to_refcounted_page + get_page_unless_zero) beside Linux 6.13</h2>
 * "v9" is "KVM: mmu: Improve handling of non-refcounted pfns" (David Stevens, PATCH v9 3/6, 2023,
 * <a href="https://lore.kernel.org/all/?q=s%3A%22Improve+handling+of+non-refcounted+pfns%22">lore</a>).
 * In v9 the table below applies only on the REMAPPED path ({@code hva_to_pfn_remapped}, VM_IO/VM_PFNMAP
 * VMAs); pages from the fast and slow paths come from GUP, which always returns a page it took a reference
 * on ({@code kvm_follow_refcounted_pfn}). 6.13 deleted {@code kvm_pfn_to_refcounted_page}: a page is
 * refcounted iff GUP gave it (fast/slow path), and a remapped pfn is never refcounted.
 * <table>
 * <caption>Refcounting per kind, v9 and 6.13</caption>
 * <tr><th>Kind</th><th>v9 ({@link #v9Rule})</th><th>6.13 ({@link #linux613Rule})</th></tr>
 * <tr><td>NO_STRUCT_PAGE</td><td>NO_PAGE ({@code !pfn_valid} → NULL)</td><td>NO_PAGE (only reachable remapped)</td></tr>
 * <tr><td>RESERVED</td><td>NO_PAGE (PageReserved, not zero, not ZONE_DEVICE → NULL)</td><td>GUP: REFCOUNTED; remapped: NO_PAGE</td></tr>
 * <tr><td>ZERO_PAGE</td><td>REFCOUNTED — the code's own comment: "The ZERO_PAGE(s) is marked PG_reserved, but is
 *   refcounted" (a huge-zero-page tail: VIA_HEAD)</td><td>GUP: REFCOUNTED (but FOLL_PIN takes no pin on it since 6.5,
 *   and unpin is a no-op)</td></tr>
 * <tr><td>FREE</td><td>STRUCT_PAGE_NOT_REFCOUNTED (a struct page, {@code get_page_unless_zero} fails: the
 *   "tail of a non-compound higher-order allocation" case) → refused unless allow_non_refcounted_struct_page</td>
 *   <td>never returned (GUP cannot return it; remapped: NO_PAGE)</td></tr>
 * <tr><td>HUGETLB_TAIL, THP_TAIL, COMPOUND_TAIL</td><td>REFCOUNTED_VIA_HEAD ({@code get_page} counts the folio)</td>
 *   <td>GUP: REFCOUNTED_VIA_HEAD</td></tr>
 * <tr><td>NORMAL, *_HEAD</td><td>REFCOUNTED</td><td>GUP: REFCOUNTED</td></tr>
 * <tr><td>NOT_OBSERVED</td><td>remapped: NO_PAGE assumed (a PFNMAP pfn is hidden from every reader; most have no
 *   struct page) — GUP: REFCOUNTED</td><td>GUP: REFCOUNTED; remapped: NO_PAGE</td></tr>
 * </table>
 * Note: ZERO_PAGE is refcounted although it is PG_reserved: kvm_main.c (5.19–6.12) says so in
 * {@code kvm_pfn_to_refcounted_page}, and this class follows the code.
 *
 * @param pfn        the pfn (a real pfn, or {@link KvmPfn#NOT_OBSERVABLE}/{@link KvmPfn#HIDDEN})
 * @param kind       the kind, from kpageflags
 * @param kpageflags the raw kpageflags word ({@link #UNKNOWN_FLAGS} when not read)
 */
public record RefcountedPage(long pfn, Kind kind, long kpageflags) {

    /** kpageflags was not read (bit 63 is never set by the kernel). */
    public static final long UNKNOWN_FLAGS = 1L << 63;

    /** What kpageflags says the page is. */
    public enum Kind {
        NOT_OBSERVED, NO_STRUCT_PAGE, ZERO_PAGE, RESERVED, FREE, HUGETLB_HEAD, HUGETLB_TAIL, THP_HEAD, THP_TAIL,
        COMPOUND_HEAD, COMPOUND_TAIL, NORMAL;

        public boolean isTail() {
            return this == HUGETLB_TAIL || this == THP_TAIL || this == COMPOUND_TAIL;
        }
    }

    /** Whether KVM would hold a reference, and on what. */
    public enum Refcount {
        /** The page's own refcount (a head or an order-0 page). */
        REFCOUNTED,
        /** A tail page: the reference is on the compound head / folio. */
        REFCOUNTED_VIA_HEAD,
        /** A struct page KVM must not refcount (refcount 0): refused unless allow_non_refcounted_struct_page. */
        STRUCT_PAGE_NOT_REFCOUNTED,
        /** No (usable) struct page: nothing to refcount; safe only under the MMU notifier. */
        NO_PAGE;

        public boolean refcounted() {
            return this == REFCOUNTED || this == REFCOUNTED_VIA_HEAD;
        }
    }

    /** How the pfn was found: through GUP (fast/slow path) or the remapped path. */
    public enum Path { GUP, REMAPPED }

    /** The kind of a raw kpageflags word (see the class table). Allocation-free. */
    public static Kind classify(long flags) {
        if (flags == UNKNOWN_FLAGS) return Kind.NOT_OBSERVED;
        if (KPageFlag.NOPAGE.in(flags)) return Kind.NO_STRUCT_PAGE;
        if (KPageFlag.ZERO_PAGE.in(flags)) return Kind.ZERO_PAGE;
        if (KPageFlag.RESERVED.in(flags)) return Kind.RESERVED;
        if (KPageFlag.BUDDY.in(flags) || KPageFlag.OFFLINE.in(flags)) return Kind.FREE;
        boolean head = KPageFlag.COMPOUND_HEAD.in(flags), tail = KPageFlag.COMPOUND_TAIL.in(flags);
        if (KPageFlag.HUGE.in(flags) && (head || tail)) return head ? Kind.HUGETLB_HEAD : Kind.HUGETLB_TAIL;
        if (KPageFlag.THP.in(flags) && (head || tail)) return head ? Kind.THP_HEAD : Kind.THP_TAIL;
        if (head) return Kind.COMPOUND_HEAD;
        if (tail) return Kind.COMPOUND_TAIL;
        return Kind.NORMAL;
    }

    /**
     * Whether kpageflags {@code flags} of one of this process's pages mean a KSM page. KPF_KSM is trusted only
     * where KSM can have merged a page of ours (ksm_stat counts merged pages; see {@link KsmStat} for the
     * 6.12 kernels that set the bit on every anonymous page), read only when the bit is set.
     */
    public static boolean isKsm(long flags) {
        if (flags == UNKNOWN_FLAGS || !KPageFlag.KSM.in(flags)) return false;
        return KsmStat.mergedPages(0).orElse(1) != 0;
    }

    /** The page of {@code pfn} with kpageflags {@code flags}. */
    public static RefcountedPage of(long pfn, long flags) {
        return new RefcountedPage(pfn, classify(flags), flags);
    }

    /** v9's answer: GUP pages always refcounted; remapped pages by kvm_pfn_to_refcounted_page. */
    public static Refcount v9Rule(Kind kind, Path path) {
        if (path == Path.GUP) return kind.isTail() ? Refcount.REFCOUNTED_VIA_HEAD : Refcount.REFCOUNTED;
        return switch (kind) {
            case NOT_OBSERVED, NO_STRUCT_PAGE, RESERVED -> Refcount.NO_PAGE;
            case FREE -> Refcount.STRUCT_PAGE_NOT_REFCOUNTED;
            case ZERO_PAGE, NORMAL, HUGETLB_HEAD, THP_HEAD, COMPOUND_HEAD -> Refcount.REFCOUNTED;
            case HUGETLB_TAIL, THP_TAIL, COMPOUND_TAIL -> Refcount.REFCOUNTED_VIA_HEAD;
        };
    }

    /** Linux 6.13's answer: refcounted iff GUP gave the page; remapped pfns never. */
    public static Refcount linux613Rule(Kind kind, Path path) {
        if (path == Path.REMAPPED) return Refcount.NO_PAGE;
        return kind.isTail() ? Refcount.REFCOUNTED_VIA_HEAD : Refcount.REFCOUNTED;
    }

    public Refcount v9Rule(Path path) {
        return v9Rule(kind, path);
    }

    public Refcount linux613Rule(Path path) {
        return linux613Rule(kind, path);
    }

    public boolean zeroPage() {
        return kind == Kind.ZERO_PAGE;
    }

    public boolean hwpoison() {
        return kpageflags != UNKNOWN_FLAGS && KPageFlag.HWPOISON.in(kpageflags);
    }
}
