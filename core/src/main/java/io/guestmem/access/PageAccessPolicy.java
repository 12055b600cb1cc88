package io.guestmem.access;

import io.guestmem.memslot.Memslot;

/**
 * "May the host access this guest frame now?", asked by {@link GuestMemory} before it touches a page of a
 * slot the policy {@link #governs} (every other slot takes the fast path without asking). The guest_memfd
 * state machine answers it (shared pages yes; private or unmapped ones no), so that a device model touching
 * private memory gets a {@link PrivateMemoryException} instead of a SIGBUS.
 *
 * <p>The answer is a point in time: the implementation must not let a page turn private while a host access
 * it allowed can still be in flight (the conversion waits, as KVM's conversions wait for the invalidation
 * lock). Implementations must be thread-safe and should not allocate.
 */
@FunctionalInterface
public interface PageAccessPolicy {

    /** Allows everything: the default, right for VMs without private memory. */
    PageAccessPolicy ALLOW_ALL = new PageAccessPolicy() {
        @Override public boolean mayAccess(Memslot slot, long gfn, boolean write) { return true; }
        @Override public boolean governs(Memslot slot) { return false; }
    };

    /**
     * Both policies: a slot is governed when either governs it, and an access is allowed when each policy that
     * governs the slot allows it ({@code first} asked first). {@link #ALLOW_ALL} as either is the other.
     */
    static PageAccessPolicy both(PageAccessPolicy first, PageAccessPolicy second) {
        if (second == ALLOW_ALL) return first;
        if (first == ALLOW_ALL) return second;
        return new PageAccessPolicy() {
            @Override
            public boolean mayAccess(Memslot slot, long gfn, boolean write) {
                return (!first.governs(slot) || first.mayAccess(slot, gfn, write))
                        && (!second.governs(slot) || second.mayAccess(slot, gfn, write));
            }

            @Override
            public boolean governs(Memslot slot) {
                return first.governs(slot) || second.governs(slot);
            }
        };
    }

    /** True if the host may read ({@code write} false) or write gfn {@code gfn} of {@code slot}. */
    boolean mayAccess(Memslot slot, long gfn, boolean write);

    /**
     * Whether {@link #mayAccess} must be asked about the pages of {@code slot}: asked once per slot each time
     * {@link GuestMemory} builds its layout (every memslot change), so the answer must not change for a slot
     * while it exists. By default, every {@link Memslot#GUEST_MEMFD} slot.
     */
    default boolean governs(Memslot slot) {
        return slot.guestMemfd();
    }
}
