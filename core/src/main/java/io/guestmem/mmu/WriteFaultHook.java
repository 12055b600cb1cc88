package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;

/**
 * Told about every successful write fault {@link FollowPfn} answers, so a slot locker can relax the recorded
 * stage-2 entry to writable (the arm64 memslot-lock RFC: "subsequent stage 2 data aborts will relax the
 * permissions if needed"). Must be quick, allocation-free and must not throw.
 */
@FunctionalInterface
public interface WriteFaultHook {
    void writeFault(Memslot slot, long gfn);

    /** Nobody listens. */
    WriteFaultHook NONE = (slot, gfn) -> { };
}
