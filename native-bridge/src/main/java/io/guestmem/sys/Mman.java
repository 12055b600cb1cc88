package io.guestmem.sys;

import io.guestmem.ffm.Native;
import static io.guestmem.ffm.Native.C_INT;
import static io.guestmem.ffm.Native.C_LONG;
import static io.guestmem.ffm.Native.C_POINTER;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * Memory-management calls: {@code mmap}, {@code munmap}, {@code mprotect}, {@code madvise}, {@code mlock},
 * {@code mlock2}, {@code munlock}, {@code mremap}, {@code mincore}. Addresses are passed and returned as raw
 * {@code long}s; {@link io.guestmem.host.HostRegion} owns the segments made from them.
 */
public final class Mman {
    private Mman() {}

    public static final int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
    public static final int MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20;
    public static final int MAP_NORESERVE = 0x4000, MAP_POPULATE = 0x8000, MAP_HUGETLB = 0x40000;
    public static final int MAP_FIXED_NOREPLACE = 0x100000;
    public static final int MAP_HUGE_SHIFT = 26;

    // madvise advice values (include/uapi/asm-generic/mman-common.h; same on x86-64 and arm64).
    public static final int MADV_DONTNEED = 4, MADV_REMOVE = 9, MADV_MERGEABLE = 12, MADV_UNMERGEABLE = 13;
    public static final int MADV_HUGEPAGE = 14, MADV_NOHUGEPAGE = 15, MADV_DONTDUMP = 16, MADV_DODUMP = 17;
    public static final int MADV_POPULATE_READ = 22, MADV_POPULATE_WRITE = 23, MADV_COLLAPSE = 25;
    public static final int MADV_HWPOISON = 100;
    /** mlock2 flag: lock pages as they are faulted in instead of populating the range now. */
    public static final int MLOCK_ONFAULT = 1;
    public static final int MREMAP_MAYMOVE = 1, MREMAP_FIXED = 2, MREMAP_DONTUNMAP = 4;

    private static final MethodHandle MMAP = Native.errnoCall("mmap",
            FunctionDescriptor.of(C_POINTER, C_POINTER, C_LONG, C_INT, C_INT, C_INT, C_LONG));
    private static final MethodHandle MUNMAP = Native.errnoCall("munmap",
            FunctionDescriptor.of(C_INT, C_POINTER, C_LONG));

    private static final MethodHandle MPROTECT = Native.errnoCall("mprotect",
            FunctionDescriptor.of(C_INT, C_POINTER, C_LONG, C_INT));
    private static final MethodHandle MADVISE = Native.errnoCall("madvise",
            FunctionDescriptor.of(C_INT, C_POINTER, C_LONG, C_INT));
    private static final MethodHandle MLOCK = Native.errnoCall("mlock", FunctionDescriptor.of(C_INT, C_POINTER, C_LONG));
    private static final MethodHandle MUNLOCK = Native.errnoCall("munlock", FunctionDescriptor.of(C_INT, C_POINTER, C_LONG));
    private static final MethodHandle MREMAP = Native.errnoCallVariadic("mremap",
            FunctionDescriptor.of(C_POINTER, C_POINTER, C_LONG, C_LONG, C_INT, C_POINTER), 4);
    private static final MethodHandle MINCORE = Native.errnoCall("mincore",
            FunctionDescriptor.of(C_INT, C_POINTER, C_LONG, C_POINTER));

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

    public static void mprotect(long addr, long length, int prot) {
        try {
            MemorySegment st = Native.state();
            int r = (int) MPROTECT.invokeExact(st, MemorySegment.ofAddress(addr), length, prot);
            if (r < 0) throw new SyscallException(Native.errno(st),
                    "mprotect(" + Fmt.hex(addr) + ", " + Fmt.size(length) + ", prot=" + prot + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** {@code madvise}; throws on failure. */
    public static void madvise(long addr, long length, int advice) {
        int r = madviseRaw(addr, length, advice);
        if (r < 0) throw new SyscallException(-r, "madvise(" + Fmt.hex(addr) + ", " + Fmt.size(length) + ", "
                + adviceName(advice) + ")");
    }

    /** {@code madvise} returning 0 or {@code -errno}: for callers that treat errors as values. */
    public static int madviseRaw(long addr, long length, int advice) {
        try {
            MemorySegment st = Native.state();
            int r = (int) MADVISE.invokeExact(st, MemorySegment.ofAddress(addr), length, advice);
            return r < 0 ? -Native.errno(st) : r;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** The symbolic name of an advice value, for messages. */
    public static String adviceName(int advice) {
        return switch (advice) {
            case MADV_DONTNEED -> "MADV_DONTNEED";
            case MADV_REMOVE -> "MADV_REMOVE";
            case MADV_MERGEABLE -> "MADV_MERGEABLE";
            case MADV_UNMERGEABLE -> "MADV_UNMERGEABLE";
            case MADV_HUGEPAGE -> "MADV_HUGEPAGE";
            case MADV_NOHUGEPAGE -> "MADV_NOHUGEPAGE";
            case MADV_DONTDUMP -> "MADV_DONTDUMP";
            case MADV_DODUMP -> "MADV_DODUMP";
            case MADV_POPULATE_READ -> "MADV_POPULATE_READ";
            case MADV_POPULATE_WRITE -> "MADV_POPULATE_WRITE";
            case MADV_COLLAPSE -> "MADV_COLLAPSE";
            case MADV_HWPOISON -> "MADV_HWPOISON";
            default -> "advice " + advice;
        };
    }

    public static void mlock(long addr, long length) {
        try {
            MemorySegment st = Native.state();
            int r = (int) MLOCK.invokeExact(st, MemorySegment.ofAddress(addr), length);
            if (r < 0) throw new SyscallException(Native.errno(st), "mlock(" + Fmt.hex(addr) + ", " + Fmt.size(length) + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * {@code mlock2} ({@link #MLOCK_ONFAULT} or 0), through the raw syscall: glibc only wraps it since 2.27.
     */
    public static void mlock2(long addr, long length, int flags) {
        long r = Posix.syscallRaw(Arch.CURRENT.sysMlock2(), addr, length, flags, 0, 0, 0);
        if (r < 0) throw new SyscallException((int) -r, "mlock2(" + Fmt.hex(addr) + ", " + Fmt.size(length)
                + ", " + (flags == MLOCK_ONFAULT ? "MLOCK_ONFAULT" : Fmt.hex(flags)) + ")");
    }

    public static void munlock(long addr, long length) {
        try {
            MemorySegment st = Native.state();
            int r = (int) MUNLOCK.invokeExact(st, MemorySegment.ofAddress(addr), length);
            if (r < 0) throw new SyscallException(Native.errno(st), "munlock(" + Fmt.hex(addr) + ", " + Fmt.size(length) + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** {@code mremap}; {@code newAddr} is used only with {@link #MREMAP_FIXED}. Returns the new address. */
    public static long mremap(long oldAddr, long oldSize, long newSize, int flags, long newAddr) {
        try {
            MemorySegment st = Native.state();
            MemorySegment r = (MemorySegment) MREMAP.invokeExact(st, MemorySegment.ofAddress(oldAddr), oldSize,
                    newSize, flags, MemorySegment.ofAddress(newAddr));
            if (r.address() == -1L) throw new SyscallException(Native.errno(st), "mremap(" + Fmt.hex(oldAddr) + ", "
                    + Fmt.size(oldSize) + ", " + Fmt.size(newSize) + ", flags=" + flags + ", " + Fmt.hex(newAddr) + ")");
            return r.address();
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * {@code mincore}: how many base pages of {@code [addr, addr+length)} are resident. One call for the
     * whole range (the vector is one byte per page).
     */
    public static long residentPages(long addr, long length) {
        long pages = (length + Posix.PAGE_SIZE - 1) / Posix.PAGE_SIZE;
        try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
            MemorySegment vec = a.allocate(pages);
            MemorySegment st = Native.state();
            int r = (int) MINCORE.invokeExact(st, MemorySegment.ofAddress(addr), length, vec);
            if (r < 0) throw new SyscallException(Native.errno(st), "mincore(" + Fmt.hex(addr) + ", " + Fmt.size(length) + ")");
            long n = 0;
            for (long i = 0; i < pages; i++) n += vec.get(java.lang.foreign.ValueLayout.JAVA_BYTE, i) & 1;
            return n;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
