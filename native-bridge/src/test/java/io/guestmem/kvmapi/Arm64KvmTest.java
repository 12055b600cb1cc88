package io.guestmem.kvmapi;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/**
 * The arm64 ioctl numbers computed from their _IOR/_IOW definitions equal kernel-abi.md section 5
 * (0x8020AEAF, 0x4020AEAE, 0x4010AEAB/AC), and the layouts and register ids follow
 * arch/arm64/include/uapi/asm/kvm.h ({@code KVM_REG_ARM_CORE_REG(name) = offsetof(struct kvm_regs, name) /
 * sizeof(__u32)}). Pure arithmetic: runs on every architecture.
 */
class Arm64KvmTest {
    @Test
    void numbersMatchTheHeaders() {
        assertEquals(0x8020AEAFL, Arm64Kvm.KVM_ARM_PREFERRED_TARGET);
        assertEquals(0x4020AEAEL, Arm64Kvm.KVM_ARM_VCPU_INIT);
        assertEquals(0x4010AEABL, Arm64Kvm.KVM_GET_ONE_REG);
        assertEquals(0x4010AEACL, Arm64Kvm.KVM_SET_ONE_REG);
    }

    @Test
    void layoutsMatchTheHeaders() {
        assertEquals(32, Arm64Kvm.VCPU_INIT.byteSize());
        assertEquals(16, Arm64Kvm.ONE_REG.byteSize());
        assertEquals(8, KvmLayouts.offset(Arm64Kvm.ONE_REG, "addr"));
        assertEquals(272, Arm64Kvm.USER_PT_REGS.byteSize());
        assertEquals(248, KvmLayouts.offset(Arm64Kvm.USER_PT_REGS, "sp"));
        assertEquals(256, KvmLayouts.offset(Arm64Kvm.USER_PT_REGS, "pc"));
        assertEquals(264, KvmLayouts.offset(Arm64Kvm.USER_PT_REGS, "pstate"));
    }

    @Test
    void coreRegisterIds() {
        // KVM_REG_ARM64 0x6000000000000000 | KVM_REG_SIZE_U64 0x0030000000000000 | KVM_REG_ARM_CORE 0x0010 << 16
        assertEquals(0x6030000000100000L, Arm64Kvm.x(0));
        assertEquals(0x6030000000100002L, Arm64Kvm.x(1));
        assertEquals(0x603000000010003CL, Arm64Kvm.x(30));
        assertEquals(0x603000000010003EL, Arm64Kvm.REG_SP);
        assertEquals(0x6030000000100040L, Arm64Kvm.REG_PC);
        assertEquals(0x6030000000100042L, Arm64Kvm.REG_PSTATE);
    }

    @Test
    void psciFeatureAndPstate() {
        Arm64Kvm.VcpuInit init = new Arm64Kvm.VcpuInit(5, new int[7]).withFeature(Arm64Kvm.FEATURE_PSCI_0_2);
        assertEquals(1 << 2, init.features()[0]);
        assertEquals(0x3C5L, Arm64Kvm.PSR_MODE_EL1H | Arm64Kvm.PSR_D_BIT | Arm64Kvm.PSR_A_BIT | Arm64Kvm.PSR_I_BIT
                | Arm64Kvm.PSR_F_BIT);
    }

    @Test
    void systemEventDecoding() {
        // struct kvm_run: the exit union at 32; system_event {__u32 type; __u32 ndata; union {flags; data[16]}}
        assertEquals(24, KvmExitReason.SYSTEM_EVENT);
        assertEquals(32, KvmLayouts.offset(KvmLayouts.KVM_RUN, "exit", "system_event", "type"));
        assertEquals(36, KvmLayouts.offset(KvmLayouts.KVM_RUN, "exit", "system_event", "ndata"));
        assertEquals(40, KvmLayouts.offset(KvmLayouts.KVM_RUN, "exit", "system_event", "data"));
        assertEquals(1, KvmExitReason.SYSTEM_EVENT_SHUTDOWN);
    }
}
