package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;

/**
 * Where guest frames that became dirty behind KVM's own log are recorded ({@code mark_page_dirty_in_slot}): the
 * library's one dirty sink, given to both of its sources when they are built ({@code io.guestmem.vm.VmMemory}
 * passes one that marks the VMM's dirty bitmap in io.guestmem.access). Its source: a dirty release of a
 * faulted-in page ({@link FollowPfn#releaseFaultinPage}, one frame, only for slots with LOG_DIRTY_PAGES).
 * {@code io.guestmem.lock.MemslotLock} takes one too but has nothing to report: a slot that logs dirty pages
 * can be neither locked for write nor made to log while write-locked, so no unlock has dirty frames.
 * Must be quick, thread-safe, and must not throw.
 */
@FunctionalInterface
public interface DirtyLog {
    /** Frames {@code [firstGfn, firstGfn + npages)} of {@code slot} (absolute gfns, not slot-relative) are dirty. */
    void markDirty(Memslot slot, long firstGfn, long npages);

    /** Drops every mark: for a source built without a bitmap to feed. */
    DirtyLog NONE = (slot, firstGfn, npages) -> { };
}
