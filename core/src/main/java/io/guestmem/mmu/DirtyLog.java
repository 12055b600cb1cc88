package io.guestmem.mmu;

/**
 * Where a dirty release of a faulted-in page is recorded ({@code mark_page_dirty_in_slot}): the owner of the
 * per-slot dirty bitmap (io.guestmem.access) plugs in here. Called only for slots with LOG_DIRTY_PAGES.
 * Must be quick and thread-safe.
 */
@FunctionalInterface
public interface DirtyLog {
    /**
     * Marks {@code gfn} dirty.
     *
     * @param slotId KVM's dirty-ring slot encoding: {@code (addressSpace << 16) | id}
     * @param gfn    the absolute guest frame number (not slot-relative)
     */
    void markDirty(int slotId, long gfn);

    /** Drops every mark (the default until an owner plugs in). */
    DirtyLog NONE = (slotId, gfn) -> { };

    /** {@code (addressSpace << 16) | id}, as {@code struct kvm_dirty_gfn.slot}. */
    static int slotId(int addressSpace, int id) {
        return (addressSpace << 16) | id;
    }
}
