package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;

/**
 * Where guest frames that became dirty behind KVM's own log are recorded ({@code mark_page_dirty_in_slot}): the
 * owner of the per-slot dirty bitmap (io.guestmem.access) plugs in here. Two sources speak it: a dirty release
 * of a faulted-in page ({@link FollowPfn#releaseFaultinPage}, one frame, only for slots with LOG_DIRTY_PAGES)
 * and the unlock of a READ_WRITE-locked logging slot ({@code io.guestmem.lock.MemslotLock}, every frame of it).
 * Must be quick, thread-safe, and must not throw.
 */
@FunctionalInterface
public interface DirtyLog {
    /** Frames {@code [firstGfn, firstGfn + npages)} of {@code slot} (absolute gfns, not slot-relative) are dirty. */
    void markDirty(Memslot slot, long firstGfn, long npages);

    /** Drops every mark (the default until an owner plugs in). */
    DirtyLog NONE = (slot, firstGfn, npages) -> { };

    /** {@code (addressSpace << 16) | id}, as {@code struct kvm_dirty_gfn.slot} (the dirty ring's encoding). */
    static int slotId(int addressSpace, int id) {
        return (addressSpace << 16) | id;
    }
}
