package io.guestmem.kvmapi;

/**
 * {@code KVM_CAP_*} numbers ({@code include/uapi/linux/kvm.h}) the library asks about. Identical on every
 * architecture; whether a capability is offered is only ever learnt from KVM_CHECK_EXTENSION.
 */
public final class KvmCap {
    private KvmCap() {}

    public static final int USER_MEMORY = 3;
    public static final int NR_MEMSLOTS = 10;
    public static final int SYNC_MMU = 16;
    public static final int INTERNAL_ERROR_DATA = 40;
    public static final int READONLY_MEM = 81;
    public static final int MULTI_ADDRESS_SPACE = 92;
    public static final int MANUAL_DIRTY_LOG_PROTECT2 = 168;
    public static final int DIRTY_LOG_RING = 192;
    public static final int DIRTY_LOG_RING_ACQ_REL = 223;
    public static final int DIRTY_LOG_RING_WITH_BITMAP = 225;
    public static final int USER_MEMORY2 = 231;
    public static final int MEMORY_FAULT_INFO = 232;
    public static final int MEMORY_ATTRIBUTES = 233;
    public static final int GUEST_MEMFD = 234;
    public static final int VM_TYPES = 235;
    public static final int GUEST_MEMFD_FLAGS = 244;

    /** KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE / KVM_DIRTY_LOG_INITIALLY_SET, args[0] of MANUAL_DIRTY_LOG_PROTECT2. */
    public static final long DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1, DIRTY_LOG_INITIALLY_SET = 2;

    /** {@code KVM_CAP_USER_MEMORY2}, or {@code cap 999} for numbers this table does not name: for messages. */
    public static String nameOf(int cap) {
        return switch (cap) {
            case USER_MEMORY -> "KVM_CAP_USER_MEMORY";
            case NR_MEMSLOTS -> "KVM_CAP_NR_MEMSLOTS";
            case SYNC_MMU -> "KVM_CAP_SYNC_MMU";
            case INTERNAL_ERROR_DATA -> "KVM_CAP_INTERNAL_ERROR_DATA";
            case READONLY_MEM -> "KVM_CAP_READONLY_MEM";
            case MULTI_ADDRESS_SPACE -> "KVM_CAP_MULTI_ADDRESS_SPACE";
            case MANUAL_DIRTY_LOG_PROTECT2 -> "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2";
            case DIRTY_LOG_RING -> "KVM_CAP_DIRTY_LOG_RING";
            case DIRTY_LOG_RING_ACQ_REL -> "KVM_CAP_DIRTY_LOG_RING_ACQ_REL";
            case DIRTY_LOG_RING_WITH_BITMAP -> "KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP";
            case USER_MEMORY2 -> "KVM_CAP_USER_MEMORY2";
            case MEMORY_FAULT_INFO -> "KVM_CAP_MEMORY_FAULT_INFO";
            case MEMORY_ATTRIBUTES -> "KVM_CAP_MEMORY_ATTRIBUTES";
            case GUEST_MEMFD -> "KVM_CAP_GUEST_MEMFD";
            case VM_TYPES -> "KVM_CAP_VM_TYPES";
            case GUEST_MEMFD_FLAGS -> "KVM_CAP_GUEST_MEMFD_FLAGS";
            default -> "cap " + cap;
        };
    }
}
