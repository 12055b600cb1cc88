package io.guestmem.memslot;

/**
 * A guest_memfd file as {@code kvm_gmem_bind} checks a binding against it: the descriptor a slot names and
 * the file's size ({@code i_size}, fixed at KVM_CREATE_GUEST_MEMFD). Identity matters: two bindings of the
 * same object are bindings of one file, whose ranges must not overlap. {@code io.guestmem.kvm.KvmGuestMemfd}
 * is the real one; tests of the writer's rules use any implementation.
 */
public interface GuestMemfdFile {
    /** The open descriptor. */
    int fd();

    /** The file's size in bytes. */
    long size();

    /**
     * Whether the file was created host-mappable ({@code GUEST_MEMFD_FLAG_MMAP}): {@code kvm_gmem_bind} then
     * marks its slots {@code KVM_MEMSLOT_GMEM_ONLY}, which arm64 requires of every guest_memfd slot.
     */
    default boolean hostMappable() {
        return false;
    }
}
