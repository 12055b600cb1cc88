package io.guestmem.sys;

import io.guestmem.ffm.Native;
import static io.guestmem.ffm.Native.C_INT;
import static io.guestmem.ffm.Native.C_LONG;
import static io.guestmem.ffm.Native.C_POINTER;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * File descriptors and process identity: {@code open}, {@code close}, {@code pread}, {@code pwrite}, {@code fdatasync},
 * {@code ioctl}, {@code sysconf}, {@code getpid}, {@code geteuid}, and the raw {@code syscall} for calls
 * without a libc wrapper (numbers from {@link Arch}).
 */
public final class Posix {
    private Posix() {}

    public static final int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CLOEXEC = 0x80000;
    public static final int O_NONBLOCK = 0x800;
    private static final int SC_PAGESIZE = 30; // same value in glibc on x86-64 and arm64

    private static final MethodHandle OPEN = Native.errnoCallVariadic("open",
            FunctionDescriptor.of(C_INT, C_POINTER, C_INT, C_INT), 2);
    private static final MethodHandle CLOSE = Native.errnoCall("close", FunctionDescriptor.of(C_INT, C_INT));
    private static final MethodHandle PREAD = Native.errnoCall("pread",
            FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_LONG, C_LONG));
    private static final MethodHandle PWRITE = Native.errnoCall("pwrite",
            FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_LONG, C_LONG));
    private static final MethodHandle LSEEK = Native.errnoCall("lseek",
            FunctionDescriptor.of(C_LONG, C_INT, C_LONG, C_INT));
    private static final MethodHandle IOCTL_PTR = Native.errnoCallVariadic("ioctl",
            FunctionDescriptor.of(C_INT, C_INT, C_LONG, C_POINTER), 2);
    private static final MethodHandle IOCTL_LONG = Native.errnoCallVariadic("ioctl",
            FunctionDescriptor.of(C_INT, C_INT, C_LONG, C_LONG), 2);
    private static final MethodHandle FDATASYNC = Native.errnoCall("fdatasync", FunctionDescriptor.of(C_INT, C_INT));
    private static final MethodHandle SYSCONF = Native.errnoCall("sysconf", FunctionDescriptor.of(C_LONG, C_INT));
    private static final MethodHandle GETPID = Native.call("getpid", FunctionDescriptor.of(C_INT));
    private static final MethodHandle GETEUID = Native.call("geteuid", FunctionDescriptor.of(C_INT));
    private static final MethodHandle GETUID = Native.call("getuid", FunctionDescriptor.of(C_INT));
    private static final MethodHandle SYSCALL6 = Native.errnoCallVariadic("syscall",
            FunctionDescriptor.of(C_LONG, C_LONG, C_LONG, C_LONG, C_LONG, C_LONG, C_LONG, C_LONG), 1);

    /** The base page size, from {@code sysconf(_SC_PAGESIZE)}: 4K on x86-64, 4K/16K/64K on arm64. */
    public static final long PAGE_SIZE = sysconf(SC_PAGESIZE);

    public static int open(String path, int flags) {
        return open(path, flags, 0);
    }

    /** {@code open(path, flags | O_CLOEXEC, mode)}: the mode of a file it creates. */
    public static int open(String path, int flags, int mode) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = Native.state();
            int fd = (int) OPEN.invokeExact(st, a.allocateFrom(path), flags | O_CLOEXEC, mode);
            if (fd < 0) throw new SyscallException(Native.errno(st), "open(" + path + ", " + Fmt.hex(flags) + ")");
            return fd;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void close(int fd) {
        try {
            MemorySegment st = Native.state();
            int r = (int) CLOSE.invokeExact(st, fd);
            if (r < 0) throw new SyscallException(Native.errno(st), "close(" + fd + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * One {@code pread} into {@code buf}; returns the bytes read (0 at end of file). Retries EINTR.
     * The segment must be native memory.
     */
    public static long pread(int fd, MemorySegment buf, long count, long offset) {
        try {
            MemorySegment st = Native.state();
            while (true) {
                long r = (long) PREAD.invokeExact(st, fd, buf, count, offset);
                if (r >= 0) return r;
                int e = Native.errno(st);
                if (e != Errno.EINTR.number)
                    throw new SyscallException(e, "pread(" + fd + ", " + count + ", " + Fmt.hex(offset) + ")");
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** {@code pread} that returns -errno instead of throwing: for callers that treat errors as values. */
    public static long preadRaw(int fd, MemorySegment buf, long count, long offset) {
        try {
            MemorySegment st = Native.state();
            long r = (long) PREAD.invokeExact(st, fd, buf, count, offset);
            return r >= 0 ? r : -Native.errno(st);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static long pwrite(int fd, MemorySegment buf, long count, long offset) {
        try {
            MemorySegment st = Native.state();
            while (true) {
                long r = (long) PWRITE.invokeExact(st, fd, buf, count, offset);
                if (r >= 0) return r;
                int e = Native.errno(st);
                if (e != Errno.EINTR.number)
                    throw new SyscallException(e, "pwrite(" + fd + ", " + count + ", " + Fmt.hex(offset) + ")");
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** {@code fdatasync(fd)}: the file's data (and the metadata needed to read it back) on stable storage. */
    public static void fdatasync(int fd) {
        try {
            MemorySegment st = Native.state();
            while (true) {
                int r = (int) FDATASYNC.invokeExact(st, fd);
                if (r == 0) return;
                int e = Native.errno(st);
                if (e != Errno.EINTR.number) throw new SyscallException(e, "fdatasync(" + fd + ")");
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** {@code lseek} whence values: the end of the file, the next byte that holds data, the next hole (linux/fs.h). */
    public static final int SEEK_END = 2, SEEK_DATA = 3, SEEK_HOLE = 4;

    /**
     * {@code lseek(fd, offset, whence)}: the resulting offset, or -1 when {@link #SEEK_DATA} finds no data at or
     * after {@code offset} (ENXIO). shmem and hugetlbfs answer SEEK_DATA/SEEK_HOLE from their page cache and
     * swap, so a file's data is found whether or not this process maps it.
     */
    public static long lseek(int fd, long offset, int whence) {
        try {
            MemorySegment st = Native.state();
            long r = (long) LSEEK.invokeExact(st, fd, offset, whence);
            if (r >= 0) return r;
            int e = Native.errno(st);
            if (e == Errno.ENXIO.number && whence == SEEK_DATA) return -1;
            throw new SyscallException(e, "lseek(" + fd + ", " + Fmt.hex(offset) + ", "
                    + (whence == SEEK_DATA ? "SEEK_DATA" : whence == SEEK_HOLE ? "SEEK_HOLE" : String.valueOf(whence)) + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** {@code ioctl(fd, request, arg)} with a pointer argument; returns the non-negative result. */
    public static int ioctl(int fd, long request, MemorySegment arg, String name) {
        int r = ioctlRaw(fd, request, arg);
        if (r < 0) throw new SyscallException(-r, "ioctl(" + fd + ", " + name + ")");
        return r;
    }

    /** {@code ioctl(fd, request, arg)} with an integer argument; returns the non-negative result. */
    public static int ioctl(int fd, long request, long arg, String name) {
        int r = ioctlRaw(fd, request, arg);
        if (r < 0) throw new SyscallException(-r, "ioctl(" + fd + ", " + name + ", " + arg + ")");
        return r;
    }

    /** Pointer ioctl returning {@code -errno} on failure instead of throwing. */
    public static int ioctlRaw(int fd, long request, MemorySegment arg) {
        try {
            MemorySegment st = Native.state();
            int r = (int) IOCTL_PTR.invokeExact(st, fd, request, arg);
            return r >= 0 ? r : -Native.errno(st);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Integer ioctl returning {@code -errno} on failure instead of throwing. */
    public static int ioctlRaw(int fd, long request, long arg) {
        try {
            MemorySegment st = Native.state();
            int r = (int) IOCTL_LONG.invokeExact(st, fd, request, arg);
            return r >= 0 ? r : -Native.errno(st);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * The raw {@code syscall(nr, a0..a5)}: returns the result or {@code -errno}. Binding classes wrap it
     * for calls glibc does not export on every version (memfd_secret, userfaultfd).
     */
    public static long syscallRaw(long nr, long a0, long a1, long a2, long a3, long a4, long a5) {
        try {
            MemorySegment st = Native.state();
            long r = (long) SYSCALL6.invokeExact(st, nr, a0, a1, a2, a3, a4, a5);
            return r >= 0 ? r : -Native.errno(st);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static long sysconf(int name) {
        try {
            MemorySegment st = Native.state();
            long r = (long) SYSCONF.invokeExact(st, name);
            if (r < 0) throw new SyscallException(Native.errno(st), "sysconf(" + name + ")");
            return r;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int getpid() {
        try {
            return (int) GETPID.invokeExact();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int geteuid() {
        try {
            return (int) GETEUID.invokeExact();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static int getuid() {
        try {
            return (int) GETUID.invokeExact();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
