package io.guestmem.sys;

import io.guestmem.ffm.Native;
import static io.guestmem.ffm.Native.C_INT;
import static io.guestmem.ffm.Native.C_POINTER;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * A file descriptor of a plain file or a pipe end, owned: what a device model hands to {@link Uio} (a disk
 * image, a tap-like pipe). Opened close-on-exec. {@link #close()} is idempotent; {@link #fd()} after it
 * throws IllegalStateException ({@link UseAfterClose}) instead of handing out a number the process may
 * already have given to another file.
 */
public final class FileFd implements AutoCloseable {
    private static final MethodHandle PIPE2 = Native.errnoCall("pipe2", FunctionDescriptor.of(C_INT, C_POINTER, C_INT));

    private final int fd;
    private final String what;
    private volatile boolean closed;

    private FileFd(int fd, String what) {
        this.fd = fd;
        this.what = what;
    }

    /** {@code open(path, flags | O_CLOEXEC)} of an existing file ({@link Posix#O_RDONLY}, {@code O_WRONLY}, {@code O_RDWR}, ...). */
    public static FileFd open(String path, int flags) {
        return open(path, flags, 0);
    }

    /** {@code open(path, flags | O_CLOEXEC, mode)}: {@code mode} for a file it creates. */
    public static FileFd open(String path, int flags, int mode) {
        return new FileFd(Posix.open(path, flags, mode), path);
    }

    /** The two ends of a pipe; closing it closes both. */
    public record Pipe(FileFd readEnd, FileFd writeEnd) implements AutoCloseable {
        @Override
        public void close() {
            try {
                readEnd.close();
            } finally {
                writeEnd.close();
            }
        }
    }

    /** {@code pipe2(fds, O_CLOEXEC)}. */
    public static Pipe pipe() {
        return pipe(0);
    }

    /** {@code pipe2(fds, flags | O_CLOEXEC)}: {@link Posix#O_NONBLOCK} for both ends that never block. */
    public static Pipe pipe(int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment fds = a.allocate(C_INT, 2);
            MemorySegment st = Native.state();
            int r = (int) PIPE2.invokeExact(st, fds, flags | Posix.O_CLOEXEC);
            if (r < 0) throw new SyscallException(Native.errno(st), "pipe2(" + Fmt.hex(flags | Posix.O_CLOEXEC) + ")");
            return new Pipe(new FileFd(fds.getAtIndex(C_INT, 0), "pipe read end"),
                    new FileFd(fds.getAtIndex(C_INT, 1), "pipe write end"));
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** The fd number; valid only while open. */
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

    /** {@code fd 7 (/tmp/disk.img)}. */
    @Override
    public String toString() {
        return "fd " + fd + " (" + what + ")";
    }
}
