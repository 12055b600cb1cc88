package io.guestmem.kvm.x86;

import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvmapi.X86Kvm;
import io.guestmem.kvmapi.X86Regs;
import io.guestmem.kvmapi.X86Segment;
import io.guestmem.kvmapi.X86Sregs;

/**
 * Puts an x86 vCPU into the state a tiny guest expects: real mode at an entry point, or flat 32-bit
 * protected mode (paging off) with a GDT in guest memory. The segment state is written through
 * KVM_SET_SREGS, so the guest needs no mode-switch code of its own.
 */
public final class X86Cpu {
    private X86Cpu() {}

    /** Where Intel's real-mode support may put its TSS (3 pages below the BIOS): the conventional value. */
    public static final long TSS_ADDR = 0xfffbd000L;

    /** KVM_SET_TSS_ADDR with the conventional address: once per VM, before the first real-mode run. */
    public static void prepareVm(KvmVm vm) {
        X86Kvm.setTssAddr(vm.vmFd(), TSS_ADDR);
    }

    /** Real mode, CS = 0, IP = {@code entryGpa} (below 64 KiB), all data segments 0. */
    public static void enterRealMode(Vcpu vcpu, long entryGpa) {
        X86Sregs s = X86Kvm.getSregs(vcpu.vcpuFd());
        s = s.withSegments(X86Segment.realMode(0, true), X86Segment.realMode(0, false))
                .withCr0(s.cr0() & ~X86Sregs.CR0_PE);
        X86Kvm.setSregs(vcpu.vcpuFd(), s);
        X86Kvm.setRegs(vcpu.vcpuFd(), X86Regs.initial().with(X86Regs.Reg.RIP, entryGpa));
    }

    /**
     * Flat 32-bit protected mode: CR0.PE set, paging off, CS = 0x08 and the data segments = 0x10 with base 0
     * and limit 4 GiB, GDTR = {@code gdtGpa} (where the caller loaded {@link X86GuestPrograms#flatGdt()}),
     * EIP = {@code entryGpa}.
     */
    public static void enterFlat32(Vcpu vcpu, long entryGpa, long gdtGpa) {
        X86Sregs s = X86Kvm.getSregs(vcpu.vcpuFd());
        s = s.withSegments(X86Segment.flat32(X86GuestPrograms.CODE_SELECTOR, true),
                        X86Segment.flat32(X86GuestPrograms.DATA_SELECTOR, false))
                .withGdt(gdtGpa, X86GuestPrograms.flatGdt().length - 1)
                .withCr0(s.cr0() | X86Sregs.CR0_PE);
        X86Kvm.setSregs(vcpu.vcpuFd(), s);
        X86Kvm.setRegs(vcpu.vcpuFd(), X86Regs.initial().with(X86Regs.Reg.RIP, entryGpa));
    }

    /** Sets the vCPU up for {@code program} (its mode, its entry) ; for FLAT32 the GDT must be at {@code gdtGpa}. */
    public static void enter(Vcpu vcpu, X86Program program, long gdtGpa) {
        switch (program.mode()) {
            case REAL -> enterRealMode(vcpu, program.entryGpa());
            case FLAT32 -> enterFlat32(vcpu, program.entryGpa(), gdtGpa);
        }
    }

    /**
     * Enters {@code program}'s mode at its entry and runs it to HLT within {@code maxExits} exits. The caller
     * has loaded {@code program.code()} at {@code program.loadGpa()} (and, for FLAT32, the GDT at {@code gdtGpa}).
     */
    public static java.util.List<io.guestmem.kvm.VcpuExit> run(Vcpu vcpu, X86Program program, long gdtGpa, int maxExits) {
        enter(vcpu, program, gdtGpa);
        return vcpu.runToHlt(maxExits);
    }

    public static X86Regs regs(Vcpu vcpu) {
        return X86Kvm.getRegs(vcpu.vcpuFd());
    }
}
