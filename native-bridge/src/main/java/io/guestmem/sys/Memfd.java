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
 * Anonymous files: {@code memfd_create} (optionally on hugetlbfs), {@code memfd_secret}, and the two
 * calls that size and punch them, {@code ftruncate} and {@code fallocate}.
 */
public final class Memfd {
    private Memfd() {}

    public static final int MFD_CLOEXEC = 0x1, MFD_ALLOW_SEALING = 0x2, MFD_HUGETLB = 0x4;
    /** The huge page size is encoded as log2(size) in bits 26..31 of the flags (MFD_HUGE_SHIFT). */
    public static final int MFD_HUGE_SHIFT = 26;
    public static final int FALLOC_FL_KEEP_SIZE = 0x1, FALLOC_FL_PUNCH_HOLE = 0x2;

    private static final MethodHandle MEMFD_CREATE = Native.errnoCall("memfd_create",
            FunctionDescriptor.of(C_INT, C_POINTER, C_INT));
    private static final MethodHandle FTRUNCATE = Native.errnoCall("ftruncate", FunctionDescriptor.of(C_INT, C_INT, C_LONG));
    private static final MethodHandle FALLOCATE = Native.errnoCall("fallocate",
            FunctionDescriptor.of(C_INT, C_INT, C_INT, C_LONG, C_LONG));

    /** The flags that ask memfd_create for a hugetlbfs file of the given page size (a power of two). */
    public static int hugetlbFlags(long hugePageSize) {
        if (hugePageSize <= 0 || Long.bitCount(hugePageSize) != 1)
            throw new IllegalArgumentException("huge page size must be a power of two, got " + hugePageSize);
        return MFD_HUGETLB | (Long.numberOfTrailingZeros(hugePageSize) << MFD_HUGE_SHIFT);
    }

    /** {@code memfd_create(name, flags)}; {@link #MFD_CLOEXEC} is always added. Returns the fd. */
    public static int create(String name, int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = Native.state();
            int fd = (int) MEMFD_CREATE.invokeExact(st, a.allocateFrom(name), flags | MFD_CLOEXEC);
            if (fd < 0) throw new SyscallException(Native.errno(st), "memfd_create(" + name + ", " + Fmt.hex(flags | MFD_CLOEXEC) + ")");
            return fd;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * {@code memfd_secret(flags)} through the raw syscall (glibc has no wrapper): memory removed from the
     * kernel's direct map. {@code O_CLOEXEC} is always added. Returns the fd.
     */
    public static int secret(int flags) {
        long r = Posix.syscallRaw(Arch.CURRENT.sysMemfdSecret(), flags | Posix.O_CLOEXEC, 0, 0, 0, 0, 0);
        if (r < 0) throw new SyscallException((int) -r, "memfd_secret(" + Fmt.hex(flags | Posix.O_CLOEXEC) + ")");
        return (int) r;
    }

    public static void ftruncate(int fd, long length) {
        try {
            MemorySegment st = Native.state();
            int r = (int) FTRUNCATE.invokeExact(st, fd, length);
            if (r < 0) throw new SyscallException(Native.errno(st), "ftruncate(" + fd + ", " + Fmt.size(length) + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void fallocate(int fd, int mode, long offset, long length) {
        try {
            MemorySegment st = Native.state();
            int r = (int) FALLOCATE.invokeExact(st, fd, mode, offset, length);
            if (r < 0) throw new SyscallException(Native.errno(st), "fallocate(" + fd + ", mode=" + Fmt.hex(mode)
                    + ", " + Fmt.hex(offset) + ", " + Fmt.size(length) + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Frees the pages of {@code [offset, offset+length)} without changing the file size (reads give zeros). */
    public static void punchHole(int fd, long offset, long length) {
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
    }
}
