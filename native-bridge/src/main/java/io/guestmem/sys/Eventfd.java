package io.guestmem.sys;

import io.guestmem.ffm.Native;
import static io.guestmem.ffm.Native.C_INT;
import static io.guestmem.ffm.Native.C_LONG;
import static io.guestmem.ffm.Native.C_POINTER;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * An eventfd, owned: the 8-byte counter a virtio front-end kicks a queue through and a device signals its
 * used buffers through (vhost's kick and call fds). {@link #create} makes one; {@link #adopt} takes one that
 * arrived over a unix socket. {@link #drain} reads (and so resets) the counter, {@link #signal} adds one.
 * An fd adopted from another process may be anything: a read or write that does not move exactly 8 bytes is
 * refused as EINVAL (a pipe would), not taken as a count. {@link #close()} is idempotent.
 */
public final class Eventfd implements AutoCloseable {
    /** eventfd2 flags (linux/eventfd.h: the O_ values). */
    public static final int EFD_NONBLOCK = Posix.O_NONBLOCK, EFD_CLOEXEC = Posix.O_CLOEXEC;

    private static final MethodHandle EVENTFD = Native.errnoCall("eventfd", FunctionDescriptor.of(C_INT, C_INT, C_INT));
    private static final MethodHandle READ = Native.errnoCall("read", FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_LONG));
    private static final MethodHandle WRITE = Native.errnoCall("write", FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_LONG));

    private final int fd;
    private final String what;
    private volatile boolean closed;

    private Eventfd(int fd, String what) {
        this.fd = fd;
        this.what = what;
    }

    /** {@code eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)}: a drain never blocks. */
    public static Eventfd create(String what) {
        try {
            MemorySegment st = Native.state();
            int fd = (int) EVENTFD.invokeExact(st, 0, EFD_CLOEXEC | EFD_NONBLOCK);
            if (fd < 0) throw new SyscallException(Native.errno(st), "eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)");
            return new Eventfd(fd, what);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Takes ownership of {@code fd} (received from a peer): closing this closes it. */
    public static Eventfd adopt(int fd, String what) {
        if (fd < 0) throw new IllegalArgumentException("fd " + fd);
        return new Eventfd(fd, what);
    }

    /**
     * Reads the counter (resetting it): the number of signals since the last drain, 0 when there were none
     * and the fd is non-blocking (EAGAIN). A blocking fd with no signal blocks: poll it first.
     */
    public long drain() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ValueLayout.JAVA_LONG);
            MemorySegment st = Native.state();
            while (true) {
                long n = (long) READ.invokeExact(st, fd(), v, 8L);
                if (n == 8) return v.get(ValueLayout.JAVA_LONG, 0);
                if (n >= 0) throw new SyscallException(Errno.EINVAL.number, "read(" + this + ")", n + " bytes, not an eventfd's 8");
                int e = Native.errno(st);
                if (e == Errno.EINTR.number) continue;
                if (e == Errno.EAGAIN.number) return 0;
                throw new SyscallException(e, "read(" + this + ")");
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Adds 1 to the counter (wakes whoever polls it). EAGAIN only if the counter is at its maximum. */
    public void signal() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(ValueLayout.JAVA_LONG);
            v.set(ValueLayout.JAVA_LONG, 0, 1L);
            MemorySegment st = Native.state();
            while (true) {
                long n = (long) WRITE.invokeExact(st, fd(), v, 8L);
                if (n == 8) return;
                if (n >= 0) throw new SyscallException(Errno.EINVAL.number, "write(" + this + ")", n + " bytes, not an eventfd's 8");
                int e = Native.errno(st);
                if (e == Errno.EINTR.number) continue;
                throw new SyscallException(e, "write(" + this + ")");
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public int fd() {
        if (closed) throw UseAfterClose.of(this, "fd()");
        return fd;
    }

    public boolean isOpen() {
        return !closed;
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        Posix.close(fd);
    }

    /** {@code eventfd 12 (kick of queue 0)}. */
    @Override
    public String toString() {
        return "eventfd " + fd + " (" + what + ")";
    }
}
