package io.guestmem.lock;

import io.guestmem.memslot.Memslot;

/**
 * Told about guest frames that became dirty behind the dirty log's back. {@link MemslotLock} calls it when a
 * slot locked {@link LockMode#READ_WRITE} that logs dirty pages is unlocked: every page was mapped writable for
 * the whole lock, so any of them may have been written (the seed's {@code set_page_dirty_lock} on unpin).
 * A plain callback so that the dirty bitmap of {@code io.guestmem.access} or a {@code DirtyLog} of
 * {@code io.guestmem.mmu} can be plugged in without this package depending on either.
 */
@FunctionalInterface
public interface DirtyLogHook {
    /** Frames {@code [firstGfn, firstGfn + npages)} of {@code slot} are dirty. Must not throw. */
    void markDirty(Memslot slot, long firstGfn, long npages);
}
