package io.guestmem.kvmapi;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/**
 * The computed ioctl numbers equal the ones gcc produced from the kernel headers on this machine kind
 * (kernel-abi.md section 5), and the struct layouts have the kernel's sizes and offsets.
 */
class KvmIoctlsTest {
    @Test
    void genericNumbersMatchTheHeaders() {
        assertEquals(0xAE00L, KvmIoctls.KVM_GET_API_VERSION);
        assertEquals(0xAE01L, KvmIoctls.KVM_CREATE_VM);
        assertEquals(0xAE03L, KvmIoctls.KVM_CHECK_EXTENSION);
        assertEquals(0xAE04L, KvmIoctls.KVM_GET_VCPU_MMAP_SIZE);
        assertEquals(0xAE41L, KvmIoctls.KVM_CREATE_VCPU);
        assertEquals(0x4010AE42L, KvmIoctls.KVM_GET_DIRTY_LOG);
        assertEquals(0x4020AE46L, KvmIoctls.KVM_SET_USER_MEMORY_REGION);
        assertEquals(0x40A0AE49L, KvmIoctls.KVM_SET_USER_MEMORY_REGION2);
        assertEquals(0x4068AEA3L, KvmIoctls.KVM_ENABLE_CAP);
        assertEquals(0xAE80L, KvmIoctls.KVM_RUN);
        assertEquals(0xC018AEC0L, KvmIoctls.KVM_CLEAR_DIRTY_LOG);
        assertEquals(0xAEC7L, KvmIoctls.KVM_RESET_DIRTY_RINGS);
        assertEquals(0xC040AED4L, KvmIoctls.KVM_CREATE_GUEST_MEMFD);
    }

    @Test
    void x86NumbersMatchTheHeaders() {
        assertEquals(0x8090AE81L, X86Kvm.KVM_GET_REGS);
        assertEquals(0x4090AE82L, X86Kvm.KVM_SET_REGS);
        assertEquals(0x8138AE83L, X86Kvm.KVM_GET_SREGS);
        assertEquals(0x4138AE84L, X86Kvm.KVM_SET_SREGS);
        assertEquals(0xAE47L, X86Kvm.KVM_SET_TSS_ADDR);
    }

    @Test
    void layoutsHaveTheKernelsSizesAndOffsets() {
        assertEquals(32, KvmLayouts.USERSPACE_MEMORY_REGION.byteSize());
        assertEquals(160, KvmLayouts.USERSPACE_MEMORY_REGION2.byteSize());
        assertEquals(32, KvmLayouts.offset(KvmLayouts.USERSPACE_MEMORY_REGION2, "guest_memfd_offset"));
        assertEquals(40, KvmLayouts.offset(KvmLayouts.USERSPACE_MEMORY_REGION2, "guest_memfd"));
        assertEquals(44, KvmLayouts.offset(KvmLayouts.USERSPACE_MEMORY_REGION2, "pad1"));
        assertEquals(48, KvmLayouts.offset(KvmLayouts.USERSPACE_MEMORY_REGION2, "pad2"));
        assertEquals(64, KvmLayouts.CREATE_GUEST_MEMFD.byteSize());
        assertEquals(16, KvmLayouts.DIRTY_LOG.byteSize());
        assertEquals(24, KvmLayouts.CLEAR_DIRTY_LOG.byteSize());
        assertEquals(104, KvmLayouts.ENABLE_CAP.byteSize());
        assertEquals(16, KvmLayouts.DIRTY_GFN.byteSize());
        assertEquals(2352, KvmLayouts.KVM_RUN.byteSize());
        assertEquals(8, KvmLayouts.offset(KvmLayouts.KVM_RUN, "exit_reason"));
        assertEquals(32, KvmLayouts.offset(KvmLayouts.KVM_RUN, "exit"));
        assertEquals(288, KvmLayouts.offset(KvmLayouts.KVM_RUN, "kvm_valid_regs"));
        assertEquals(304, KvmLayouts.offset(KvmLayouts.KVM_RUN, "s"));
        assertEquals(34, KvmLayouts.offset(KvmLayouts.KVM_RUN, "exit", "io", "port"));
        assertEquals(40, KvmLayouts.offset(KvmLayouts.KVM_RUN, "exit", "io", "data_offset"));
        assertEquals(48, KvmLayouts.offset(KvmLayouts.KVM_RUN, "exit", "mmio", "len"));
        assertEquals(52, KvmLayouts.offset(KvmLayouts.KVM_RUN, "exit", "mmio", "is_write"));
        assertEquals(40, KvmLayouts.offset(KvmLayouts.KVM_RUN, "exit", "memory_fault", "gpa"));
        assertEquals(144, X86Kvm.REGS.byteSize());
        assertEquals(24, X86Kvm.SEGMENT.byteSize());
        assertEquals(312, X86Kvm.SREGS.byteSize());
        assertEquals(192, KvmLayouts.offset(X86Kvm.SREGS, "gdt"));
        assertEquals(224, KvmLayouts.offset(X86Kvm.SREGS, "cr0"));
        assertEquals(272, KvmLayouts.offset(X86Kvm.SREGS, "apic_base"));
    }
}
