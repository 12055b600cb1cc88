package io.guestmem.sys;

import io.guestmem.ffm.Native;
import static io.guestmem.ffm.Native.C_INT;
import static io.guestmem.ffm.Native.C_LONG;
import static io.guestmem.ffm.Native.C_OFF_T;
import static io.guestmem.ffm.Native.C_POINTER;
import static io.guestmem.ffm.Native.C_SIZE_T;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;

/**
 * Vectored I/O on a file descriptor ({@code <sys/uio.h>}): {@code readv}, {@code writev}, {@code preadv},
 * {@code pwritev} over an {@link IovecArray}, returning the bytes transferred or throwing a
 * {@link UioException} (a {@link SyscallException}: {@code EBADF from preadv(fd 7, 3 iovecs, offset 0x1000)})
 * that also says how many bytes earlier calls of the same request moved. EINTR is retried, as everywhere in
 * the bridge: a vectored call interrupted after moving data returns its count instead, so an EINTR means
 * nothing moved.
 *
 * <h2>Longer than IOV_MAX</h2>
 * The kernel takes at most {@link #IOV_MAX} iovecs per call (more is EINVAL). A longer array is sent as
 * consecutive calls of at most IOV_MAX entries each; the positional forms advance the file offset by what
 * the previous calls moved. The request stops at the first call that moves fewer bytes than its entries hold
 * (end of file, a full pipe, a non-blocking fd with nothing more now, or the kernel's cap of one call at
 * {@code MAX_RW_COUNT}, 2 GiB less a page): then the count returned is short, as one call's would be, and no
 * later entry was touched. A failing call after successful ones throws with {@link UioException#bytesDone()}
 * saying what those moved. An array that fits is exactly one system call.
 */
public final class Uio {
    private Uio() {}

    /**
     * {@code struct iovec { void *iov_base; size_t iov_len; }}: a pointer then a size_t, laid out from the
     * platform's own layouts (on x86-64 and arm64, both LP64, two 8-byte fields with no padding: 16 bytes).
     */
    public static final StructLayout IOVEC = MemoryLayout.structLayout(
            C_POINTER.withName("iov_base"), C_SIZE_T.withName("iov_len"));
    static final long BASE_OFFSET = IOVEC.byteOffset(MemoryLayout.PathElement.groupElement("iov_base"));
    static final long LEN_OFFSET = IOVEC.byteOffset(MemoryLayout.PathElement.groupElement("iov_len"));

    /** {@code _SC_IOV_MAX} (glibc's {@code _SC_UIO_MAXIOV}; the same on x86-64 and arm64). */
    private static final int SC_IOV_MAX = 60;
    /** The kernel's {@code UIO_MAXIOV}, used only if sysconf has no answer (it has one on Linux). */
    private static final int UIO_MAXIOV = 1024;

    /** Most iovecs one call takes: {@code sysconf(_SC_IOV_MAX)}, 1024 on Linux. */
    public static final int IOV_MAX = iovMax();

    private static final MethodHandle READV = Native.errnoCall("readv",
            FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_INT));
    private static final MethodHandle WRITEV = Native.errnoCall("writev",
            FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_INT));
    private static final MethodHandle PREADV = Native.errnoCall("preadv",
            FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_INT, C_OFF_T));
    private static final MethodHandle PWRITEV = Native.errnoCall("pwritev",
            FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_INT, C_OFF_T));

    private static int iovMax() {
        try {
            long v = Posix.sysconf(SC_IOV_MAX);
            return v > 0 ? (int) Math.min(v, Integer.MAX_VALUE) : UIO_MAXIOV;
        } catch (SyscallException e) {
            return UIO_MAXIOV; // -1: "no limit" by POSIX's reading; the kernel still enforces UIO_MAXIOV
        }
    }

    private enum Call { READV, WRITEV, PREADV, PWRITEV }

    /** {@code readv(fd, iov, n)}: reads into the entries in order, from the file position (which advances). */
    public static long readv(int fd, IovecArray iov) {
        return transfer(Call.READV, fd, iov, 0);
    }

    /** {@code writev(fd, iov, n)}: writes the entries in order at the file position (which advances). */
    public static long writev(int fd, IovecArray iov) {
        return transfer(Call.WRITEV, fd, iov, 0);
    }

    /** {@code preadv(fd, iov, n, offset)}: reads at file offset {@code offset}; the file position is unchanged. */
    public static long preadv(int fd, IovecArray iov, long offset) {
        return transfer(Call.PREADV, fd, iov, offset);
    }

    /** {@code pwritev(fd, iov, n, offset)}: writes at file offset {@code offset}; the file position is unchanged. */
    public static long pwritev(int fd, IovecArray iov, long offset) {
        return transfer(Call.PWRITEV, fd, iov, offset);
    }

    private static long transfer(Call call, int fd, IovecArray iov, long offset) {
        int n = iov.count();
        long done = 0;
        int first = 0;
        do {
            int k = Math.min(n - first, IOV_MAX);
            MemorySegment part = iov.from(first, name(call));
            long want = iov.totalLength(first, k);
            long at = offset + done;
            long r = call(call, fd, part, k, at);
            if (r < 0) {
                throw new UioException((int) -r, describe(call, fd, k, at),
                        first == 0 && k == n ? null : "iovecs " + first + ".." + (first + k - 1) + " of " + n, done);
            }
            done += r;
            if (r < want) break; // short: stop here, as one call would
            first += k;
        } while (first < n);
        return done;
    }

    /** One call, EINTR retried; returns its count or -errno. */
    private static long call(Call call, int fd, MemorySegment iov, int k, long offset) {
        try {
            MemorySegment st = Native.state();
            while (true) {
                long r = switch (call) {
                    case READV -> (long) READV.invokeExact(st, fd, iov, k);
                    case WRITEV -> (long) WRITEV.invokeExact(st, fd, iov, k);
                    case PREADV -> (long) PREADV.invokeExact(st, fd, iov, k, offset);
                    case PWRITEV -> (long) PWRITEV.invokeExact(st, fd, iov, k, offset);
                };
                if (r >= 0) return r;
                int e = Native.errno(st);
                if (e != Errno.EINTR.number) return -e;
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    private static String name(Call call) {
        return switch (call) {
            case READV -> "readv";
            case WRITEV -> "writev";
            case PREADV -> "preadv";
            case PWRITEV -> "pwritev";
        };
    }

    /** {@code preadv(fd 7, 3 iovecs, offset 0x1000)}, {@code readv(fd 7, 3 iovecs)}. */
    private static String describe(Call call, int fd, int k, long offset) {
        String args = "fd " + fd + ", " + k + (k == 1 ? " iovec" : " iovecs");
        return name(call) + "(" + args + (call == Call.PREADV || call == Call.PWRITEV ? ", offset " + Fmt.hex(offset) : "") + ")";
    }
}
