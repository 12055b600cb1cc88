package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;

/**
 * Who may map a guest page, asked per gfn by {@link FollowPfn} (its FOLL_GUEST row, {@link FollGuest#view}).
 * The guest_memfd gfn view ({@code io.guestmem.gmem.GuestMemfdPages}) implements this; the default says every
 * page is shared ({@link Mappability#ALL}).
 *
 * <p>Called on every lookup before the library touches the page: must be quick, allocation-free and
 * thread-safe, and must never block on a lookup in progress.
 */
@FunctionalInterface
public interface MappabilityQuery {

    Mappability mappability(Memslot slot, long gfn);

    /** Everything shared: the behaviour without private memory. */
    MappabilityQuery ALL_SHARED = (slot, gfn) -> Mappability.ALL;
}
