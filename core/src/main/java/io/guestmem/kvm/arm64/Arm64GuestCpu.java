package io.guestmem.kvm.arm64;

import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.GuestProgram;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.kvmapi.KvmExitReason;
import java.util.List;
import java.util.OptionalLong;

/**
 * {@link GuestCpu} on arm64: {@link Arm64GuestPrograms} at EL1 with the MMU off, ended by PSCI SYSTEM_OFF
 * (KVM_EXIT_SYSTEM_EVENT, type SHUTDOWN). arm64 has no real mode and no TSS: the code may sit anywhere in RAM.
 */
public final class Arm64GuestCpu implements GuestCpu {
    public static final Arm64GuestCpu INSTANCE = new Arm64GuestCpu();

    private Arm64GuestCpu() {}

    @Override
    public String arch() {
        return "arm64";
    }

    @Override
    public void prepareVm(KvmVm vm) {
        // nothing VM-wide: each vCPU gets KVM_ARM_VCPU_INIT in runToCompletion
    }

    @Override
    public GuestProgram writeGfnToEveryPage(long codeGpa, long startGpa, long npages, int tag) {
        return Arm64GuestPrograms.writeGfnToEveryPage(codeGpa, startGpa, npages, tag);
    }

    @Override
    public GuestProgram checkAndRewriteEveryPage(long codeGpa, long startGpa, long npages, int oldTag, int newTag) {
        return Arm64GuestPrograms.checkAndRewriteEveryPage(codeGpa, startGpa, npages, oldTag, newTag);
    }

    @Override
    public GuestProgram storeByte(long codeGpa, long gpa, int value) {
        return Arm64GuestPrograms.storeByte(codeGpa, gpa, value);
    }

    @Override
    public GuestProgram readAndReport(long codeGpa, long gpa) {
        return Arm64GuestPrograms.readAndReport(codeGpa, gpa);
    }

    /** KVM_EXIT_SYSTEM_EVENT of type SHUTDOWN: what PSCI SYSTEM_OFF turns into. */
    public static boolean isSystemOff(VcpuExit e) {
        return e instanceof VcpuExit.SystemEvent s && s.type() == KvmExitReason.SYSTEM_EVENT_SHUTDOWN;
    }

    private static Arm64Program arm64(GuestProgram program) {
        if (!(program instanceof Arm64Program p))
            throw new IllegalArgumentException(program.name() + " is not an arm64 program");
        return p;
    }

    @Override
    public void enter(Vcpu vcpu, GuestProgram program) {
        Arm64Cpu.enter(vcpu, arm64(program).loadGpa());
    }

    @Override
    public List<VcpuExit> runToCompletion(Vcpu vcpu, GuestProgram program, int maxExits) {
        enter(vcpu, program);
        List<VcpuExit> exits = vcpu.runUntil(Arm64GuestCpu::isSystemOff, "reach PSCI SYSTEM_OFF", maxExits);
        return List.copyOf(exits.subList(0, exits.size() - 1));
    }

    @Override
    public OptionalLong reported(List<VcpuExit> exits) {
        for (VcpuExit e : exits)
            if (e instanceof VcpuExit.Mmio m && m.isWrite() && m.gpa() == Arm64GuestPrograms.REPORT_GPA) {
                long v = 0;
                byte[] d = m.data();
                for (int i = Math.min(m.len(), d.length) - 1; i >= 0; i--) v = (v << 8) | (d[i] & 0xff);
                return OptionalLong.of(v);
            }
        return OptionalLong.empty();
    }
}
