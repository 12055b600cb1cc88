package io.guestmem.kvm.arm64;

import io.guestmem.kvm.Vcpu;
import io.guestmem.kvmapi.Arm64Kvm;

/**
 * Puts an arm64 vCPU into the state a tiny guest expects: KVM_ARM_VCPU_INIT with the preferred target and
 * PSCI 0.2 (so {@code hvc #0} with SYSTEM_OFF ends the guest as KVM_EXIT_SYSTEM_EVENT), then EL1h with D, A,
 * I and F masked at the entry point. The reset state has SCTLR_EL1.M = 0 (MMU off), so gpa = va; data
 * accesses are then Device-nGnRnE and must be aligned.
 */
public final class Arm64Cpu {
    private Arm64Cpu() {}

    /** EL1 using SP_EL1, all four exception masks set. */
    public static final long PSTATE_EL1H_MASKED = Arm64Kvm.PSR_MODE_EL1H | Arm64Kvm.PSR_D_BIT | Arm64Kvm.PSR_A_BIT
            | Arm64Kvm.PSR_I_BIT | Arm64Kvm.PSR_F_BIT;

    /**
     * KVM_ARM_VCPU_INIT (preferred target + PSCI 0.2), which resets the vCPU: safe to repeat before each
     * program on the same vCPU.
     */
    public static void init(Vcpu vcpu) {
        Arm64Kvm.VcpuInit init = Arm64Kvm.preferredTarget(vcpu.vm().vmFd()).withFeature(Arm64Kvm.FEATURE_PSCI_0_2);
        Arm64Kvm.vcpuInit(vcpu.vcpuFd(), init);
    }

    /** Init, then PC = {@code entryGpa} and PSTATE = EL1h with interrupts masked. */
    public static void enter(Vcpu vcpu, long entryGpa) {
        if (entryGpa % 4 != 0) throw new IllegalArgumentException("A64 code is 4-byte aligned");
        init(vcpu);
        Arm64Kvm.setOneReg(vcpu.vcpuFd(), Arm64Kvm.REG_PSTATE, PSTATE_EL1H_MASKED);
        Arm64Kvm.setOneReg(vcpu.vcpuFd(), Arm64Kvm.REG_PC, entryGpa);
    }

    public static long x(Vcpu vcpu, int n) {
        return Arm64Kvm.getOneReg(vcpu.vcpuFd(), Arm64Kvm.x(n));
    }

    public static long pc(Vcpu vcpu) {
        return Arm64Kvm.getOneReg(vcpu.vcpuFd(), Arm64Kvm.REG_PC);
    }

    public static long pstate(Vcpu vcpu) {
        return Arm64Kvm.getOneReg(vcpu.vcpuFd(), Arm64Kvm.REG_PSTATE);
    }
}
