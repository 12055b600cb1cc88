package io.guestmem.kvm;

import io.guestmem.kvm.arm64.Arm64GuestCpu;
import io.guestmem.kvm.x86.X86GuestCpu;
import io.guestmem.sys.Arch;
import java.util.List;
import java.util.OptionalLong;

/**
 * "The same" tiny guests on every architecture KVM runs here, so tests and the demo assert one thing on x86
 * and arm64: each architecture builds the programs in its own hand-encoded machine code and runs them to its
 * own clean end (x86: HLT; arm64: PSCI SYSTEM_OFF, a KVM_EXIT_SYSTEM_EVENT of type SHUTDOWN). The programs
 * step through guest memory in 4 KiB guest pages whatever the host page size, and need one 4 KiB page of
 * RAM at their code gpa.
 */
public interface GuestCpu {

    /** The guests' page step: 4 KiB on both architectures, independent of the host's page size. */
    long GUEST_PAGE = 4096;

    /** The implementation for the architecture this JVM runs on: the one place that chooses. */
    static GuestCpu current() {
        return Arch.CURRENT.isX86() ? X86GuestCpu.INSTANCE : Arm64GuestCpu.INSTANCE;
    }

    /** The u64 {@link #writeGfnToEveryPage} leaves at offset 0 of the 4 KiB guest page with this gfn. */
    static long pageValue(long gfn, int tag) {
        return ((long) tag << 32) | (gfn & 0xffffffffL);
    }

    String arch();

    /** Once per VM before the first vCPU runs a guest (x86: KVM_SET_TSS_ADDR; arm64: nothing). */
    void prepareVm(KvmVm vm);

    /** Writes {@link #pageValue pageValue(gpa >> 12, tag)} at offset 0 of each of {@code npages} 4 KiB pages from {@code startGpa}. */
    GuestProgram writeGfnToEveryPage(long codeGpa, long startGpa, long npages, int tag);

    /**
     * For each of {@code npages} 4 KiB pages from {@code startGpa}: counts the pages whose u64 at offset 0 is not
     * {@link #pageValue pageValue(gfn, oldTag)}, writes {@code pageValue(gfn, newTag)} there, and reports the
     * count ({@link #reported}): a restored or migrated guest checks every page it had and writes new values.
     */
    GuestProgram checkAndRewriteEveryPage(long codeGpa, long startGpa, long npages, int oldTag, int newTag);

    /** Stores one byte at {@code gpa} (at a read-only slot: an MMIO write exit, memory unchanged). */
    GuestProgram storeByte(long codeGpa, long gpa, int value);

    /** Reads the u32 at {@code gpa} (4-byte aligned) and reports it to the host ({@link #reported}). */
    GuestProgram readAndReport(long codeGpa, long gpa);

    /** Puts the vCPU into the program's state at its entry, without running it (for tests that step exits). */
    void enter(Vcpu vcpu, GuestProgram program);

    /**
     * Puts the vCPU into the program's state at its entry and runs it to the architecture's clean end,
     * answering reads with zeros and ignoring writes, at most {@code maxExits} exits. Returns every exit
     * before the end (the end itself is not in the list). Throws {@link GuestRunException} on any other stop.
     */
    List<VcpuExit> runToCompletion(Vcpu vcpu, GuestProgram program, int maxExits);

    /** The value a {@link #readAndReport} guest reported among these exits, if any. */
    OptionalLong reported(List<VcpuExit> exits);
}
