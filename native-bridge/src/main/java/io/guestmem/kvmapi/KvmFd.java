package io.guestmem.kvmapi;

import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import io.guestmem.sys.UseAfterClose;
import java.lang.foreign.MemorySegment;

/**
 * A file descriptor of KVM's (/dev/kvm, a VM, a vCPU). Closing is idempotent; any ioctl after close
 * throws {@link IllegalStateException} instead of reaching a recycled fd number.
 */
public abstract sealed class KvmFd implements AutoCloseable permits KvmDevice, VmFd, VcpuFd {
    private final int fd;
    private final String what;
    private volatile boolean closed;

    KvmFd(int fd, String what) {
        this.fd = fd;
        this.what = what;
    }

    /** The raw fd number; valid only while open. */
    public int fd() {
        checkOpen("fd()");
        return fd;
    }

    public boolean isClosed() {
        return closed;
    }

    /** How messages name this fd: {@code vm fd 12}. */
    public String describe() {
        return what + " fd " + fd;
    }

    /** IllegalStateException naming this fd and {@code call} once closed; a field read and a branch while open. */
    final void checkOpen(String call) {
        if (closed) throw UseAfterClose.of(describe(), call);
    }

    final int ioctl(long request, MemorySegment arg, String call) {
        checkOpen(call);
        int r = Posix.ioctlRaw(fd, request, arg);
        if (r < 0) throw new SyscallException(-r, "ioctl(" + describe() + ", " + call + ")");
        return r;
    }

    final int ioctl(long request, long arg, String call) {
        checkOpen(call);
        int r = Posix.ioctlRaw(fd, request, arg);
        if (r < 0) throw new SyscallException(-r, "ioctl(" + describe() + ", " + call + ")");
        return r;
    }

    /** Releases what subclasses hold besides the fd (mmaps); called once, before the fd closes. */
    void releaseMappings() {}

    @Override
    public final synchronized void close() {
        if (closed) return;
        closed = true;
        try {
            releaseMappings();
        } finally {
            Posix.close(fd);
        }
    }
}
