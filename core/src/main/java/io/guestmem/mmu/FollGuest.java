package io.guestmem.mmu;

/**
 * The FOLL_GUEST rules of "KVM: unmap guest memory using poisoned pages" (Kirill A. Shutemov, RFCv2 13/13,
 * 2021, as Sean Christopherson's review of it settled them,
 * <a href="https://lore.kernel.org/all/?q=s%3A%22unmap+guest+memory+using+poisoned+pages%22">lore</a>) as one decision:
 * a private page ({@link Mappability#GUEST}) is returned by follow_pfn only to a lookup with the {@code guest}
 * flag, a shared page ({@link Mappability#ALL}) only to one without it, so private memory can never be mapped
 * into the shared view (and the host's view never holds a private page); a converting page
 * ({@link Mappability#NONE}) to nobody. The write check is orthogonal: a page must be host-writable to be
 * mapped writable, private or not. Allocation-free.
 */
public final class FollGuest {
    private FollGuest() {}

    /** The outcome of {@link #check}. */
    public enum Verdict {
        OK,
        /** A private page asked for without FOLL_GUEST. */
        PRIVATE_NEEDS_FOLL_GUEST,
        /** A shared page asked for with FOLL_GUEST: it belongs to the shared view only. */
        SHARED_WITHOUT_FOLL_GUEST_ONLY,
        /** The page is converting: retry once the conversion finished. */
        CONVERTING,
        /** A write lookup of a page the host may not write. */
        NOT_WRITABLE;

        public boolean ok() {
            return this == OK;
        }
    }

    /**
     * @param m            the page's mappability (ordinary, non-guest_memfd memory is {@link Mappability#ALL})
     * @param guest        the lookup carries FOLL_GUEST (it maps the page into the private view)
     * @param write        the lookup wants a writable mapping (FOLL_WRITE)
     * @param hostWritable the host mapping (or slot) allows writes
     */
    public static Verdict check(Mappability m, boolean guest, boolean write, boolean hostWritable) {
        Verdict v = view(m, guest);
        if (v == Verdict.OK && write && !hostWritable) return Verdict.NOT_WRITABLE;
        return v;
    }

    /**
     * The view half of {@link #check}: may a lookup with this {@code guest} flag return a page of this
     * mappability? {@link FollowPfn}'s row 4 (its write check is the READONLY slot row before it).
     */
    public static Verdict view(Mappability m, boolean guest) {
        return switch (m) {
            case ALL -> guest ? Verdict.SHARED_WITHOUT_FOLL_GUEST_ONLY : Verdict.OK;
            case GUEST -> guest ? Verdict.OK : Verdict.PRIVATE_NEEDS_FOLL_GUEST;
            case NONE -> Verdict.CONVERTING;
        };
    }
}
