package io.guestmem.kvmapi;

import static java.lang.foreign.MemoryLayout.paddingLayout;
import static java.lang.foreign.MemoryLayout.sequenceLayout;
import static java.lang.foreign.MemoryLayout.structLayout;
import static java.lang.foreign.MemoryLayout.unionLayout;
import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemoryLayout.PathElement;
import java.lang.foreign.StructLayout;
import java.lang.foreign.UnionLayout;

/**
 * The architecture-neutral structs of {@code include/uapi/linux/kvm.h} as FFM layouts. Field names are the
 * kernel's, so {@code offset(KVM_RUN, "exit_reason")} reads like the header. The sizes are checked against
 * the ioctl numbers' size fields in the tests (a wrong layout would give a wrong request number).
 */
public final class KvmLayouts {
    private KvmLayouts() {}

    /** {@code struct kvm_userspace_memory_region} (32 B), for KVM_SET_USER_MEMORY_REGION. */
    public static final StructLayout USERSPACE_MEMORY_REGION = structLayout(
            JAVA_INT.withName("slot"),
            JAVA_INT.withName("flags"),
            JAVA_LONG.withName("guest_phys_addr"),
            JAVA_LONG.withName("memory_size"),
            JAVA_LONG.withName("userspace_addr")).withName("kvm_userspace_memory_region");

    /**
     * {@code struct kvm_userspace_memory_region2} (160 B), for KVM_SET_USER_MEMORY_REGION2: region v1 plus
     * {@code guest_memfd_offset}@32, {@code guest_memfd}@40, {@code pad1}@44, {@code pad2[14]}@48
     * (checked against include/uapi/linux/kvm.h, 6.8+).
     */
    public static final StructLayout USERSPACE_MEMORY_REGION2 = structLayout(
            JAVA_INT.withName("slot"),
            JAVA_INT.withName("flags"),
            JAVA_LONG.withName("guest_phys_addr"),
            JAVA_LONG.withName("memory_size"),
            JAVA_LONG.withName("userspace_addr"),
            JAVA_LONG.withName("guest_memfd_offset"),
            JAVA_INT.withName("guest_memfd"),
            JAVA_INT.withName("pad1"),
            sequenceLayout(14, JAVA_LONG).withName("pad2")).withName("kvm_userspace_memory_region2");

    /** {@code struct kvm_create_guest_memfd} (64 B). */
    public static final StructLayout CREATE_GUEST_MEMFD = structLayout(
            JAVA_LONG.withName("size"),
            JAVA_LONG.withName("flags"),
            sequenceLayout(6, JAVA_LONG).withName("reserved")).withName("kvm_create_guest_memfd");

    /** {@code struct kvm_dirty_log} (16 B): the bitmap pointer sits in a union padded to 64 bits. */
    public static final StructLayout DIRTY_LOG = structLayout(
            JAVA_INT.withName("slot"),
            JAVA_INT.withName("padding1"),
            ADDRESS.withName("dirty_bitmap")).withName("kvm_dirty_log");

    /** {@code struct kvm_clear_dirty_log} (24 B). */
    public static final StructLayout CLEAR_DIRTY_LOG = structLayout(
            JAVA_INT.withName("slot"),
            JAVA_INT.withName("num_pages"),
            JAVA_LONG.withName("first_page"),
            ADDRESS.withName("dirty_bitmap")).withName("kvm_clear_dirty_log");

    /** {@code struct kvm_enable_cap} (104 B). */
    public static final StructLayout ENABLE_CAP = structLayout(
            JAVA_INT.withName("cap"),
            JAVA_INT.withName("flags"),
            sequenceLayout(4, JAVA_LONG).withName("args"),
            sequenceLayout(64, JAVA_BYTE).withName("pad")).withName("kvm_enable_cap");

    /** {@code struct kvm_dirty_gfn} (16 B): one dirty-ring entry. */
    public static final StructLayout DIRTY_GFN = structLayout(
            JAVA_INT.withName("flags"),
            JAVA_INT.withName("slot"),
            JAVA_LONG.withName("offset")).withName("kvm_dirty_gfn");

    // kvm_run's exit union: only the members this library decodes, plus the kernel's 256-byte padding.
    private static final StructLayout EXIT_HW = structLayout(JAVA_LONG.withName("hardware_exit_reason")).withName("hw");
    private static final StructLayout EXIT_FAIL_ENTRY = structLayout(
            JAVA_LONG.withName("hardware_entry_failure_reason"),
            JAVA_INT.withName("cpu"),
            paddingLayout(4)).withName("fail_entry");
    private static final StructLayout EXIT_IO = structLayout(
            JAVA_BYTE.withName("direction"),
            JAVA_BYTE.withName("size"),
            JAVA_SHORT.withName("port"),
            JAVA_INT.withName("count"),
            JAVA_LONG.withName("data_offset")).withName("io");
    private static final StructLayout EXIT_MMIO = structLayout(
            JAVA_LONG.withName("phys_addr"),
            sequenceLayout(8, JAVA_BYTE).withName("data"),
            JAVA_INT.withName("len"),
            JAVA_BYTE.withName("is_write"),
            paddingLayout(3)).withName("mmio");
    private static final StructLayout EXIT_INTERNAL = structLayout(
            JAVA_INT.withName("suberror"),
            JAVA_INT.withName("ndata"),
            sequenceLayout(16, JAVA_LONG).withName("data")).withName("internal");
    private static final StructLayout EXIT_SYSTEM_EVENT = structLayout(
            JAVA_INT.withName("type"),
            JAVA_INT.withName("ndata"),
            sequenceLayout(16, JAVA_LONG).withName("data")).withName("system_event");
    private static final StructLayout EXIT_MEMORY_FAULT = structLayout(
            JAVA_LONG.withName("flags"),
            JAVA_LONG.withName("gpa"),
            JAVA_LONG.withName("size")).withName("memory_fault");
    private static final UnionLayout EXIT_UNION = unionLayout(
            EXIT_HW, EXIT_FAIL_ENTRY, EXIT_IO, EXIT_MMIO, EXIT_INTERNAL, EXIT_SYSTEM_EVENT, EXIT_MEMORY_FAULT,
            sequenceLayout(256, JAVA_BYTE).withName("padding")).withName("exit");

    /** {@code struct kvm_run} (2352 B): the page(s) a vCPU fd maps, read after each KVM_RUN. */
    public static final StructLayout KVM_RUN = structLayout(
            JAVA_BYTE.withName("request_interrupt_window"),
            JAVA_BYTE.withName("immediate_exit"),
            paddingLayout(6),
            JAVA_INT.withName("exit_reason"),
            JAVA_BYTE.withName("ready_for_interrupt_injection"),
            JAVA_BYTE.withName("if_flag"),
            JAVA_SHORT.withName("flags"),
            JAVA_LONG.withName("cr8"),
            JAVA_LONG.withName("apic_base"),
            EXIT_UNION,
            JAVA_LONG.withName("kvm_valid_regs"),
            JAVA_LONG.withName("kvm_dirty_regs"),
            sequenceLayout(2048, JAVA_BYTE).withName("s")).withName("kvm_run");

    /** The byte offset of a (possibly nested) named field: {@code offset(KVM_RUN, "exit", "io", "port")}. */
    public static long offset(MemoryLayout layout, String... path) {
        PathElement[] elements = new PathElement[path.length];
        for (int i = 0; i < path.length; i++) elements[i] = PathElement.groupElement(path[i]);
        return layout.byteOffset(elements);
    }
}
