package io.guestmem.memslot;

/**
 * One memory slot, as KVM's {@code struct kvm_memory_slot} describes it: guest frames
 * {@code [baseGfn, baseGfn + npages)} of address space {@code addressSpace} are backed by host virtual
 * addresses starting at {@code userspaceAddr}. For a {@link #GUEST_MEMFD} slot, {@code gmemFd} and
 * {@code gmemOffset} name the guest_memfd range bound to it ({@code gmemFd} is -1 otherwise).
 *
 * <p>A value: changes produce a new {@code Memslot} inside a new {@link MemslotSet}.
 */
public record Memslot(int addressSpace, int id, long baseGfn, long npages, long userspaceAddr, int flags,
                      int gmemFd, long gmemOffset) {

    /** KVM_MEM_LOG_DIRTY_PAGES. */
    public static final int LOG_DIRTY_PAGES = 1;
    /** KVM_MEM_READONLY. */
    public static final int READONLY = 2;
    /** KVM_MEM_GUEST_MEMFD. */
    public static final int GUEST_MEMFD = 4;

    public long endGfn() {
        return baseGfn + npages;
    }

    public boolean containsGfn(long gfn) {
        return gfn - baseGfn >= 0 && gfn - baseGfn < npages;
    }

    public boolean readOnly() {
        return (flags & READONLY) != 0;
    }

    public boolean logsDirty() {
        return (flags & LOG_DIRTY_PAGES) != 0;
    }

    public boolean guestMemfd() {
        return (flags & GUEST_MEMFD) != 0;
    }

    /**
     * KVM's slot number: the address space in the high 16 bits, {@code (as_id << 16) | id}, as
     * {@code kvm_userspace_memory_region.slot} and the dirty ring's {@code kvm_dirty_gfn.slot} encode it.
     */
    public int kvmSlot() {
        return (addressSpace << 16) | id;
    }
}
