package io.guestmem.sys;

import static io.guestmem.sys.Native.C_INT;
import static io.guestmem.sys.Native.C_LONG;
import static io.guestmem.sys.Native.C_POINTER;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * Memory-management calls: {@code mmap}, {@code munmap}. Addresses are passed and returned as raw
 * {@code long}s; {@link io.guestmem.host.HostRegion} owns the segments made from them.
 */
public final class Mman {
    private Mman() {}

    public static final int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
    public static final int MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20;
    public static final int MAP_NORESERVE = 0x4000, MAP_POPULATE = 0x8000, MAP_HUGETLB = 0x40000;
    public static final int MAP_FIXED_NOREPLACE = 0x100000;
    public static final int MAP_HUGE_SHIFT = 26;

    private static final MethodHandle MMAP = Native.errnoCall("mmap",
            FunctionDescriptor.of(C_POINTER, C_POINTER, C_LONG, C_INT, C_INT, C_INT, C_LONG));
    private static final MethodHandle MUNMAP = Native.errnoCall("munmap",
            FunctionDescriptor.of(C_INT, C_POINTER, C_LONG));

    /** {@code mmap}; returns the address of the new mapping. */
    public static long mmap(long addr, long length, int prot, int flags, int fd, long offset) {
        try {
            MemorySegment st = Native.state();
            MemorySegment r = (MemorySegment) MMAP.invokeExact(st, MemorySegment.ofAddress(addr), length, prot,
                    flags, fd, offset);
            if (r.address() == -1L) {
                throw new SyscallException(Native.errno(st), "mmap(" + Fmt.hex(addr) + ", " + Fmt.size(length)
                        + ", prot=" + prot + ", flags=" + Fmt.hex(flags) + ", fd=" + fd + ", " + Fmt.hex(offset) + ")");
            }
            return r.address();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void munmap(long addr, long length) {
        try {
            MemorySegment st = Native.state();
            int r = (int) MUNMAP.invokeExact(st, MemorySegment.ofAddress(addr), length);
            if (r < 0) throw new SyscallException(Native.errno(st), "munmap(" + Fmt.hex(addr) + ", " + Fmt.size(length) + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
