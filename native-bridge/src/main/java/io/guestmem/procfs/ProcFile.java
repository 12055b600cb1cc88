package io.guestmem.procfs;

import static io.guestmem.ffm.Native.C_INT;
import static io.guestmem.ffm.Native.C_LONG;
import static io.guestmem.ffm.Native.C_POINTER;

import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.ffm.Native;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import io.guestmem.sys.UseAfterClose;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A procfs table of 8-byte entries ({@code pagemap}, {@code kpageflags}, {@code kpagecount}) opened once and
 * read with {@code pread}. The kernel wants reads that are 8-byte aligned and sized (else EINVAL), so every
 * read here is in whole entries. Reads go straight into the caller's memory: a native segment through the
 * ordinary {@code pread}, a large {@code long[]} through a critical {@code pread} that may write into the Java
 * heap (bounded chunks, see {@link #MAX_CHUNK_ENTRIES}), a small one through a per-thread scratch buffer
 * (see {@link #SCRATCH_ENTRIES}).
 */
abstract class ProcFile implements AutoCloseable {
    /**
     * The largest number of entries one pread asks for: 128 Ki entries = 1 MiB = 512 MiB of virtual
     * address space with 4K pages. Bounds the time a critical call keeps the JVM from a safepoint; ranges
     * up to this size are one pread.
     */
    static final int MAX_CHUNK_ENTRIES = 1 << 17;

    private static final MethodHandle PREAD_HEAP = Native.errnoCallCritical("pread",
            FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_LONG, C_LONG));

    /**
     * Reads of up to this many entries into a {@code long[]} go through a per-thread native scratch buffer
     * and a copy: wrapping the array in a heap segment for the critical pread allocates a small object per
     * call that escape analysis does not reliably remove (measured: 112 B per call), and the hot paths
     * (follow_pfn, pfn-cache refresh) read a handful of entries. A 4 KiB copy is noise next to the syscall.
     */
    static final int SCRATCH_ENTRIES = 512;
    private static final ThreadLocal<MemorySegment> SCRATCH =
            ThreadLocal.withInitial(() -> java.lang.foreign.Arena.ofAuto().allocate(SCRATCH_ENTRIES * 8L, 8));

    final String path;
    final int pid; // 0 when the file is not per process
    private final int fd;
    private volatile boolean closed;

    ProcFile(String path, int pid) {
        this.path = path;
        this.pid = pid;
        int f;
        try {
            f = Posix.open(path, Posix.O_RDONLY);
        } catch (SyscallException e) {
            // /proc/<pid>/... of a pid that does not exist: ENOENT (ESRCH while the task is being reaped).
            if (pid > 0 && (e.is(Errno.ENOENT) || e.is(Errno.ESRCH)) && !Files.exists(Path.of("/proc/" + pid)))
                throw new NoSuchProcessException(pid, Path.of(path).getFileName().toString(), e);
            throw e;
        }
        this.fd = f;
    }

    /** The fd for {@code call}; IllegalStateException naming the file and the call once closed. */
    final int fd(String call) {
        if (closed) throw UseAfterClose.of(path, call);
        return fd;
    }

    final boolean isClosed() {
        return closed;
    }

    /**
     * Reads {@code entries} 8-byte entries at entry index {@code index} into {@code out} (native, at byte
     * offset 0), one pread per chunk. Returns the entries read: fewer than asked only where the kernel's
     * table ends.
     */
    final long readEntries(long index, long entries, MemorySegment out) {
        int f = fd("pread");
        long done = 0;
        while (done < entries) {
            long n = Math.min(entries - done, MAX_CHUNK_ENTRIES);
            // A range of one chunk reads straight into out: no slice object on the common path.
            MemorySegment dst = n == entries ? out : out.asSlice(done * 8, n * 8);
            long r = Posix.pread(f, dst, n * 8, (index + done) * 8);
            if (r % 8 != 0) throw new ProcfsException(path + " returned " + r + " bytes, not whole entries");
            done += r / 8;
            if (r < n * 8) break;
        }
        return done;
    }

    /** As {@link #readEntries(long, long, MemorySegment)} into {@code out[off..off+entries)}. */
    final int readEntries(long index, long[] out, int off, int entries) {
        if (entries <= SCRATCH_ENTRIES) {
            MemorySegment scratch = SCRATCH.get();
            int n = (int) readEntries(index, entries, scratch);
            MemorySegment.copy(scratch, ValueLayout.JAVA_LONG, 0, out, off, n);
            return n;
        }
        int f = fd("pread");
        int done = 0;
        try {
            while (done < entries) {
                int n = Math.min(entries - done, MAX_CHUNK_ENTRIES);
                MemorySegment dst = MemorySegment.ofArray(out).asSlice((long) (off + done) * 8, (long) n * 8);
                long offset = (index + done) * 8;
                long r;
                while (true) {
                    MemorySegment st = Native.state();
                    r = (long) PREAD_HEAP.invokeExact(st, f, dst, (long) n * 8, offset);
                    if (r >= 0) break;
                    int e = Native.errno(st);
                    if (e != Errno.EINTR.number)
                        throw new SyscallException(e, "pread(" + path + ", " + n * 8 + ", " + Fmt.hex(offset) + ")");
                }
                if (r % 8 != 0) throw new ProcfsException(path + " returned " + r + " bytes, not whole entries");
                done += (int) (r / 8);
                if (r < (long) n * 8) break;
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
        return done;
    }

    /** True while {@code /proc/<pid>} exists: tells an exited target from a read past the end. */
    final boolean processAlive() {
        return pid <= 0 || Files.exists(Path.of("/proc/" + pid));
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        Posix.close(fd);
    }

    static MemorySegment checkNative(MemorySegment out, long bytes) {
        if (!out.isNative()) throw new IllegalArgumentException("the buffer must be a native segment");
        if (out.byteSize() < bytes)
            throw new IllegalArgumentException("buffer of " + out.byteSize() + " bytes is too small for " + bytes);
        return out;
    }

    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG;
}
