package io.guestmem.mmu;

/**
 * The owner of per-page reference counts that a conversion waits for (the guest_memfd state machine): every
 * reference {@link FollowPfn} hands out is also taken here, in the view the lookup asked for
 * ({@code guest} = FOLL_GUEST), and put back when the result is released, so the release of the last
 * follow_pfn reference is the final put that finishes a deferred conversion. A failed {@link #tryGet} (the
 * page converted after the mappability check) makes the lookup fail with FAULT, as a page in no view.
 * Signatures match {@code io.guestmem.gmem.GuestMemfdPages}. Must be quick, allocation-free, thread-safe.
 */
public interface GuestPageRefs {
    /** Takes a reference on {@code gfn} in the {@code guest} view; false (nothing taken) when not in that view. */
    boolean tryGet(int addressSpace, long gfn, boolean guest);

    /** Releases a reference taken by {@link #tryGet} with the same {@code guest}. */
    void put(int addressSpace, long gfn, boolean guest);

    /** No counts kept: every page is in every view (the behaviour without private memory). */
    GuestPageRefs NONE = new GuestPageRefs() {
        @Override
        public boolean tryGet(int addressSpace, long gfn, boolean guest) {
            return true;
        }

        @Override
        public void put(int addressSpace, long gfn, boolean guest) { }
    };
}
