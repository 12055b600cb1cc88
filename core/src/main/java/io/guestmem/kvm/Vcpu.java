package io.guestmem.kvm;

import io.guestmem.kvmapi.KvmDirtyRing;
import io.guestmem.kvmapi.KvmExitReason;
import io.guestmem.kvmapi.KvmRun;
import io.guestmem.kvmapi.VcpuFd;
import io.guestmem.sys.Errno;
import io.guestmem.sys.UseAfterClose;
import java.util.ArrayList;
import java.util.List;

/**
 * One vCPU of a {@link KvmVm}: its fd, its mmap'd kvm_run area and, when the VM has a dirty ring, its ring.
 * Registers are architecture-specific and set through the arch classes (x86: {@code io.guestmem.kvm.x86}).
 * A vCPU is driven by one thread at a time. Closing the VM closes its vCPUs; a closed vCPU throws.
 */
public final class Vcpu implements AutoCloseable {
    private final KvmVm vm;
    private final VcpuFd fd;
    private final KvmDirtyRing ring;

    Vcpu(KvmVm vm, VcpuFd fd, KvmDirtyRing ring) {
        this.vm = vm;
        this.fd = fd;
        this.ring = ring;
    }

    public int id() {
        return fd.id();
    }

    public KvmVm vm() {
        return vm;
    }

    /** The bridge-level fd, for architecture classes that set registers. Throws once closed. */
    public VcpuFd vcpuFd() {
        return open("vcpuFd()");
    }

    private VcpuFd open(String call) {
        if (fd.isClosed()) throw UseAfterClose.of("vcpu " + fd.id(), call);
        return fd;
    }

    /** This vCPU's dirty ring, or null when the VM was opened without one. */
    KvmDirtyRing dirtyRing() {
        return ring;
    }

    /** One KVM_RUN, decoded. */
    public VcpuExit run() {
        int r = open("run()").run();
        KvmRun run = fd.kvmRun();
        if (r == -Errno.EINTR.number) return new VcpuExit.Interrupted();
        int reason = run.exitReason();
        return switch (reason) {
            case KvmExitReason.IO -> new VcpuExit.Io(run.ioPort(), run.ioSize(),
                    run.ioDirection() == KvmExitReason.IO_OUT ? VcpuExit.Io.Direction.OUT : VcpuExit.Io.Direction.IN,
                    run.ioCount(), run.ioDirection() == KvmExitReason.IO_OUT ? run.ioData() : new byte[0]);
            case KvmExitReason.MMIO -> new VcpuExit.Mmio(run.mmioPhysAddr(), run.mmioLen(), run.mmioIsWrite(),
                    run.mmioIsWrite() ? run.mmioData() : new byte[0]);
            case KvmExitReason.HLT -> new VcpuExit.Hlt();
            case KvmExitReason.SHUTDOWN -> new VcpuExit.Shutdown();
            case KvmExitReason.FAIL_ENTRY -> new VcpuExit.FailEntry(run.failEntryReason(), run.failEntryCpu());
            case KvmExitReason.INTERNAL_ERROR -> new VcpuExit.InternalError(run.internalSuberror(), run.internalData());
            case KvmExitReason.MEMORY_FAULT -> new VcpuExit.MemoryFault(run.memoryFaultGpa(), run.memoryFaultSize(),
                    run.memoryFaultFlags(), r < 0 ? Errno.of(-r) : null);
            case KvmExitReason.SYSTEM_EVENT -> new VcpuExit.SystemEvent(run.systemEventType(), run.systemEventData());
            case KvmExitReason.INTR -> new VcpuExit.Interrupted();
            default -> new VcpuExit.Other(reason);
        };
    }

    /**
     * Runs until the guest halts, answering port reads and MMIO reads with zeros (an empty bus) and
     * ignoring port and MMIO writes, at most {@code maxExits} exits. Returns every exit, the last one
     * {@link VcpuExit.Hlt}. Throws {@link GuestRunException} (carrying the exits so far) on an exit the guest
     * cannot continue from (shutdown, failed entry, internal error, memory fault, system event) or when the
     * bound is reached.
     */
    public List<VcpuExit> runToHlt(int maxExits) {
        return runUntil(e -> e instanceof VcpuExit.Hlt, "halt", maxExits);
    }

    /**
     * Like {@link #runToHlt} with another clean end: returns every exit, the last one the first that
     * {@code end} accepts ({@code what} names it in messages).
     */
    public List<VcpuExit> runUntil(java.util.function.Predicate<VcpuExit> end, String what, int maxExits) {
        List<VcpuExit> exits = new ArrayList<>();
        for (int i = 0; i < maxExits; i++) {
            VcpuExit exit = run();
            exits.add(exit);
            if (end.test(exit)) return exits;
            switch (exit) {
                case VcpuExit.Io io -> {
                    if (io.direction() == VcpuExit.Io.Direction.IN) fd.kvmRun().setIoData(new byte[io.size() * io.count()]);
                }
                case VcpuExit.Mmio m -> {
                    if (!m.isWrite()) fd.kvmRun().setMmioData(new byte[m.len()]);
                }
                case VcpuExit.Interrupted x -> { }
                default -> throw new GuestRunException("vcpu " + id() + " stopped with " + exit, exits);
            }
        }
        throw new GuestRunException("vcpu " + id() + " did not " + what + " within " + maxExits + " exits", exits);
    }

    @Override
    public void close() {
        fd.close();
    }

    @Override
    public String toString() {
        return "Vcpu[" + fd.id() + (fd.isClosed() ? " closed" : "") + "]";
    }
}
