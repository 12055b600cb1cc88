package io.guestmem.mmu;

/**
 * The FOLL_GUEST rule, the library's one statement of who may use a page of each {@link Mappability}, as
 * "KVM: unmap guest memory using poisoned pages" (Kirill A. Shutemov, RFCv2 13/13, 2021) and Sean
 * Christopherson's review of it settled it
 * (<a href="https://lore.kernel.org/all/?q=s%3A%22unmap+guest+memory+using+poisoned+pages%22">lore</a>): a
 * private page ({@link Mappability#GUEST}) is returned only to a lookup with the {@code guest} flag, a shared
 * page ({@link Mappability#ALL}) only to one without it, so private memory is never mapped into the shared
 * view (and the host's view never holds a private page); a converting page ({@link Mappability#NONE}) to
 * nobody.
 *
 * <p>Everyone who decides by mappability asks {@link #view}: {@link FollowPfn}'s FOLL_GUEST row and
 * {@link FollowPfnBatch}, the guest_memfd page states when they hand out a reference, and the accessors'
 * policy (the host's view is a lookup without FOLL_GUEST). Whether the page may be written is not part of the
 * rule: a write to a READONLY slot is refused before it (FollowPfn's row 2, as {@code __gfn_to_hva_many}
 * refuses it before GUP runs). Allocation-free.
 */
public final class FollGuest {
    private FollGuest() {}

    /** The outcome of {@link #view}. */
    public enum Verdict {
        OK,
        /** A private page asked for without FOLL_GUEST. */
        PRIVATE_NEEDS_FOLL_GUEST,
        /** A shared page asked for with FOLL_GUEST: it belongs to the shared view only. */
        SHARED_WITHOUT_FOLL_GUEST_ONLY,
        /** The page is converting: retry once the conversion finished. */
        CONVERTING;

        public boolean ok() {
            return this == OK;
        }
    }

    /**
     * May a lookup with this {@code guest} flag (FOLL_GUEST: it maps the page into the private view) use a page
     * of mappability {@code m}? Ordinary, non-guest_memfd memory is {@link Mappability#ALL}.
     */
    public static Verdict view(Mappability m, boolean guest) {
        return switch (m) {
            case ALL -> guest ? Verdict.SHARED_WITHOUT_FOLL_GUEST_ONLY : Verdict.OK;
            case GUEST -> guest ? Verdict.OK : Verdict.PRIVATE_NEEDS_FOLL_GUEST;
            case NONE -> Verdict.CONVERTING;
        };
    }
}
