package io.guestmem.kvmapi;

/** {@code KVM_EXIT_*}: the {@code exit_reason} of {@code struct kvm_run}, and a few sub-codes. */
public final class KvmExitReason {
    private KvmExitReason() {}

    public static final int UNKNOWN = 0, EXCEPTION = 1, IO = 2, HYPERCALL = 3, DEBUG = 4, HLT = 5, MMIO = 6,
            IRQ_WINDOW_OPEN = 7, SHUTDOWN = 8, FAIL_ENTRY = 9, INTR = 10, INTERNAL_ERROR = 17,
            SYSTEM_EVENT = 24, DIRTY_RING_FULL = 31, MEMORY_FAULT = 39;

    /** {@code kvm_run.io.direction}. */
    public static final int IO_IN = 0, IO_OUT = 1;

    /** {@code KVM_SYSTEM_EVENT_*}: {@code kvm_run.system_event.type} (SHUTDOWN is what PSCI SYSTEM_OFF gives). */
    public static final int SYSTEM_EVENT_SHUTDOWN = 1, SYSTEM_EVENT_RESET = 2, SYSTEM_EVENT_CRASH = 3;

    /** {@code KVM_MEMORY_EXIT_FLAG_PRIVATE}: the faulting access was to private memory. */
    public static final long MEMORY_EXIT_FLAG_PRIVATE = 1L << 3;

    /** {@code KVM_INTERNAL_ERROR_*} suberrors. */
    public static final int INTERNAL_ERROR_EMULATION = 1, INTERNAL_ERROR_SIMUL_EX = 2, INTERNAL_ERROR_DELIVERY_EV = 3,
            INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4;

    public static String nameOf(int reason) {
        return switch (reason) {
            case UNKNOWN -> "KVM_EXIT_UNKNOWN";
            case EXCEPTION -> "KVM_EXIT_EXCEPTION";
            case IO -> "KVM_EXIT_IO";
            case HYPERCALL -> "KVM_EXIT_HYPERCALL";
            case DEBUG -> "KVM_EXIT_DEBUG";
            case HLT -> "KVM_EXIT_HLT";
            case MMIO -> "KVM_EXIT_MMIO";
            case IRQ_WINDOW_OPEN -> "KVM_EXIT_IRQ_WINDOW_OPEN";
            case SHUTDOWN -> "KVM_EXIT_SHUTDOWN";
            case FAIL_ENTRY -> "KVM_EXIT_FAIL_ENTRY";
            case INTR -> "KVM_EXIT_INTR";
            case INTERNAL_ERROR -> "KVM_EXIT_INTERNAL_ERROR";
            case SYSTEM_EVENT -> "KVM_EXIT_SYSTEM_EVENT";
            case DIRTY_RING_FULL -> "KVM_EXIT_DIRTY_RING_FULL";
            case MEMORY_FAULT -> "KVM_EXIT_MEMORY_FAULT";
            default -> "KVM_EXIT " + reason;
        };
    }
}
