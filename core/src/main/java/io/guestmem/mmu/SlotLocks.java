package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;

/**
 * Whether a slot is locked (pinned page by page, the arm64 memslot-lock RFC): a locked slot is mapped with
 * base pages only ({@link HostMappingLevel#maxMappingLevel}). The slot locker supplies this.
 */
@FunctionalInterface
public interface SlotLocks {
    boolean isLocked(Memslot slot);

    /** No slot is ever locked. */
    SlotLocks NONE = slot -> false;
}
