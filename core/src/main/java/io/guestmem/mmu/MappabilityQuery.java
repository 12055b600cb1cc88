package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;

/**
 * FOLL_GUEST (seed 004): who may map a guest page. The guest_memfd state machine implements this; the
 * default says every page is shared. {@link FollowPfn} returns a {@link Mappability#PRIVATE} page only to a
 * request with {@code guest = true} and a {@link Mappability#SHARED} page only to one without it, so private
 * memory never enters the shared view and shared memory never the private one; a {@link Mappability#NONE}
 * page (a conversion in flight) is returned to nobody. The write check is orthogonal: a page must be
 * host-writable to be mapped writable, private or not.
 *
 * <p>Called on every lookup before the library touches the page: must be quick, allocation-free and
 * thread-safe, and must never block on a lookup in progress.
 */
@FunctionalInterface
public interface MappabilityQuery {

    /** The mappability of one page. */
    enum Mappability {
        /** Host and guest (the shared view). */
        SHARED,
        /** Guest only (private): only a FOLL_GUEST lookup sees it. */
        PRIVATE,
        /** Nobody: a transition is in progress. */
        NONE
    }

    Mappability mappability(Memslot slot, long gfn);

    /** Everything shared: the behaviour without private memory. */
    MappabilityQuery ALL_SHARED = (slot, gfn) -> Mappability.SHARED;

    /** FOLL_GUEST's rule: may a lookup with this {@code guest} flag return a page of this mappability? */
    static boolean allows(Mappability m, boolean guest) {
        return guest ? m == Mappability.PRIVATE : m == Mappability.SHARED;
    }
}
