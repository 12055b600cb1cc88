package io.guestmem.kvmapi;

import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.lang.foreign.MemorySegment;

/**
 * A vCPU fd with its mmap'd {@link KvmRun} area (and, once {@link #mapDirtyRing mapped}, its dirty ring).
 * Closing unmaps both, then closes the fd; the {@link KvmRun} view must not be used afterwards (it checks).
 */
public final class VcpuFd extends KvmFd {
    private final int id;
    private final long runAddr;
    private final long runSize;
    private final KvmRun run;
    private long ringAddr;
    private long ringBytes;
    private KvmDirtyRing ring;

    VcpuFd(int fd, int id, int mmapSize) {
        super(fd, "vcpu" + id);
        this.id = id;
        this.runSize = mmapSize;
        this.runAddr = Mman.mmap(0, mmapSize, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0);
        this.run = new KvmRun(MemorySegment.ofAddress(runAddr).reinterpret(mmapSize), this);
    }

    public int id() {
        return id;
    }

    /** The shared kvm_run area: exit reason and exit data after {@link #run()}. */
    public KvmRun kvmRun() {
        checkOpen("kvmRun()");
        return run;
    }

    /**
     * KVM_RUN once. Returns 0 when the vCPU exited to userspace normally; returns {@code -EFAULT} or
     * {@code -EHWPOISON} when KVM filled a KVM_EXIT_MEMORY_FAULT, and {@code -EINTR} when a signal
     * interrupted it (exit reason KVM_EXIT_INTR): all three leave a meaningful exit in {@link #kvmRun()}.
     * Any other failure throws.
     */
    public int run() {
        checkOpen("KVM_RUN");
        int r = Posix.ioctlRaw(fd(), KvmIoctls.KVM_RUN, 0L);
        if (r >= 0) return 0;
        int errno = -r;
        int reason = run.exitReason();
        if ((errno == Errno.EFAULT.number || errno == Errno.EHWPOISON.number) && reason == KvmExitReason.MEMORY_FAULT)
            return r;
        if (errno == Errno.EINTR.number) return r;
        throw new SyscallException(errno, "ioctl(" + describe() + ", KVM_RUN)",
                "exit_reason " + KvmExitReason.nameOf(reason));
    }

    /**
     * Maps this vCPU's dirty ring ({@code bytes} = the size given to KVM_CAP_DIRTY_LOG_RING) from page offset
     * {@link KvmIoctls#KVM_DIRTY_LOG_PAGE_OFFSET}. Only once per vCPU.
     */
    public synchronized KvmDirtyRing mapDirtyRing(long bytes) {
        checkOpen("mapDirtyRing()");
        if (ring != null) return ring;
        long off = KvmIoctls.KVM_DIRTY_LOG_PAGE_OFFSET * Posix.PAGE_SIZE;
        ringAddr = Mman.mmap(0, bytes, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd(), off);
        ringBytes = bytes;
        ring = new KvmDirtyRing(MemorySegment.ofAddress(ringAddr).reinterpret(bytes), this);
        return ring;
    }

    /** For arch-specific ioctl classes ({@link X86Kvm}). */
    int ioctlPtr(long request, MemorySegment arg, String call) {
        return ioctl(request, arg, call);
    }

    @Override
    void releaseMappings() {
        try {
            if (ring != null) Mman.munmap(ringAddr, ringBytes);
        } finally {
            Mman.munmap(runAddr, runSize);
        }
    }

    @Override
    public String toString() {
        return describe() + " run@" + Fmt.hex(runAddr);
    }
}
