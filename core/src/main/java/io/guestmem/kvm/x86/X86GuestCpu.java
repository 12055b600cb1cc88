package io.guestmem.kvm.x86;

import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.GuestProgram;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import java.util.List;
import java.util.OptionalLong;

/**
 * {@link GuestCpu} on x86: flat 32-bit protected-mode guests ({@link X86GuestPrograms}) that end with HLT.
 * The 4 KiB page at the code gpa holds the flat GDT at offset 0 and the code at {@link #CODE_OFFSET}; the
 * report goes out on port {@link #REPORT_PORT}. Reaches gpas below 4 GiB.
 */
public final class X86GuestCpu implements GuestCpu {
    public static final X86GuestCpu INSTANCE = new X86GuestCpu();

    /** Where the code starts in the program's page: after the 24-byte GDT, 8-byte aligned. */
    public static final long CODE_OFFSET = 0x20;
    public static final int REPORT_PORT = 0x80;

    private X86GuestCpu() {}

    /** A flat 32-bit program and the GDT it runs with, loaded together. */
    record Flat32Guest(X86Program program, long gdtGpa) implements GuestProgram {
        @Override
        public String name() {
            return program.name();
        }

        @Override
        public List<Chunk> image() {
            return List.of(new Chunk(gdtGpa, X86GuestPrograms.flatGdt()), new Chunk(program.loadGpa(), program.code()));
        }
    }

    @Override
    public String arch() {
        return "x86-64";
    }

    @Override
    public void prepareVm(KvmVm vm) {
        X86Cpu.prepareVm(vm);
    }

    @Override
    public GuestProgram writeGfnToEveryPage(long codeGpa, long startGpa, long npages, int tag) {
        return new Flat32Guest(X86GuestPrograms.writeGfnToEveryPage(codeGpa + CODE_OFFSET, startGpa, npages, tag), codeGpa);
    }

    @Override
    public GuestProgram checkAndRewriteEveryPage(long codeGpa, long startGpa, long npages, int oldTag, int newTag) {
        return new Flat32Guest(X86GuestPrograms.checkAndRewriteEveryPage(codeGpa + CODE_OFFSET, startGpa, npages, oldTag,
                newTag, REPORT_PORT), codeGpa);
    }

    @Override
    public GuestProgram storeByte(long codeGpa, long gpa, int value) {
        return new Flat32Guest(X86GuestPrograms.storeByteFlat32(codeGpa + CODE_OFFSET, gpa, value), codeGpa);
    }

    @Override
    public GuestProgram readAndReport(long codeGpa, long gpa) {
        return new Flat32Guest(X86GuestPrograms.readU32ThenOut(codeGpa + CODE_OFFSET, gpa, REPORT_PORT), codeGpa);
    }

    private static Flat32Guest x86(GuestProgram program) {
        if (!(program instanceof Flat32Guest g))
            throw new IllegalArgumentException(program.name() + " is not an x86 program");
        return g;
    }

    @Override
    public void enter(Vcpu vcpu, GuestProgram program) {
        Flat32Guest g = x86(program);
        X86Cpu.enter(vcpu, g.program(), g.gdtGpa());
    }

    @Override
    public List<VcpuExit> runToCompletion(Vcpu vcpu, GuestProgram program, int maxExits) {
        Flat32Guest g = x86(program);
        List<VcpuExit> exits = X86Cpu.run(vcpu, g.program(), g.gdtGpa(), maxExits);
        return List.copyOf(exits.subList(0, exits.size() - 1));
    }

    @Override
    public OptionalLong reported(List<VcpuExit> exits) {
        for (VcpuExit e : exits)
            if (e instanceof VcpuExit.Io io && io.direction() == VcpuExit.Io.Direction.OUT && io.port() == REPORT_PORT)
                return OptionalLong.of(io.value());
        return OptionalLong.empty();
    }
}
