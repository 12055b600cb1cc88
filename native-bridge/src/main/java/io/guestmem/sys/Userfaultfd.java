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
import java.time.Duration;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A userfaultfd ({@code include/uapi/linux/userfaultfd.h}): the fd, its API handshake, range
 * registration (MISSING / WP / MINOR), write-protection, the events it delivers decoded into records, and
 * the ioctls that resolve a fault ({@link #copy}, {@link #zeroPage}, {@link #continueRange}, {@link #poison},
 * {@link #wake}): what a lazy-restore handler answers a {@link Pagefault} with.
 *
 * <p>A thread that faults on a MISSING/MINOR-registered page sleeps until one of those ioctls resolves the
 * page and wakes it. A Java thread must therefore never touch such a page itself while the handler needs the
 * JVM (a safepoint would wait for the sleeping thread, which waits for the handler): let the kernel fault on
 * it instead, from a thread inside a native call ({@code pwrite} from the range, {@code pread} into it).
 *
 * <p>The fd is non-blocking; {@link #read()} returns null when nothing is queued and {@link #await}
 * polls with a timeout. Non-cooperative events (REMOVE, UNMAP, REMAP, FORK) make the thread that caused
 * them wait until the event is read, so a reader must run on another thread than the one that calls
 * {@code madvise}/{@code munmap}/{@code mremap}. Thread-safe; operations after {@link #close} throw
 * {@link IllegalStateException}.
 */
public final class Userfaultfd implements AutoCloseable {

    /** {@code UFFD_API}: the only API version. */
    public static final long UFFD_API = 0xAA;
    /** Flag of the userfaultfd syscall: handle user-mode faults only (needs no privilege). */
    public static final int UFFD_USER_MODE_ONLY = 1;

    // UFFD_FEATURE_* (bits of uffdio_api.features).
    public static final long FEATURE_PAGEFAULT_FLAG_WP = 1L << 0, FEATURE_EVENT_FORK = 1L << 1,
            FEATURE_EVENT_REMAP = 1L << 2, FEATURE_EVENT_REMOVE = 1L << 3, FEATURE_MISSING_HUGETLBFS = 1L << 4,
            FEATURE_MISSING_SHMEM = 1L << 5, FEATURE_EVENT_UNMAP = 1L << 6, FEATURE_SIGBUS = 1L << 7,
            FEATURE_THREAD_ID = 1L << 8, FEATURE_MINOR_HUGETLBFS = 1L << 9, FEATURE_MINOR_SHMEM = 1L << 10,
            FEATURE_EXACT_ADDRESS = 1L << 11, FEATURE_WP_HUGETLBFS_SHMEM = 1L << 12,
            FEATURE_WP_UNPOPULATED = 1L << 13, FEATURE_POISON = 1L << 14, FEATURE_WP_ASYNC = 1L << 15,
            FEATURE_MOVE = 1L << 16;

    // UFFDIO_REGISTER_MODE_*.
    public static final long MODE_MISSING = 1L << 0, MODE_WP = 1L << 1, MODE_MINOR = 1L << 2;
    public static final long WRITEPROTECT_MODE_WP = 1L << 0, WRITEPROTECT_MODE_DONTWAKE = 1L << 1;
    // UFFDIO_{COPY,ZEROPAGE,CONTINUE,POISON}_MODE_*. DONTWAKE: resolve only, wake later with wake() (one wake for
    // a batch); WP: map the page write-protected (the range must be registered MODE_WP as well).
    public static final long COPY_MODE_DONTWAKE = 1L << 0, COPY_MODE_WP = 1L << 1;
    public static final long ZEROPAGE_MODE_DONTWAKE = 1L << 0;
    public static final long CONTINUE_MODE_DONTWAKE = 1L << 0, CONTINUE_MODE_WP = 1L << 1;
    public static final long POISON_MODE_DONTWAKE = 1L << 0;

    // UFFD_EVENT_* (uffd_msg.event) and UFFD_PAGEFAULT_FLAG_*.
    public static final int EVENT_PAGEFAULT = 0x12, EVENT_FORK = 0x13, EVENT_REMAP = 0x14, EVENT_REMOVE = 0x15,
            EVENT_UNMAP = 0x16;
    public static final long PAGEFAULT_FLAG_WRITE = 1, PAGEFAULT_FLAG_WP = 2, PAGEFAULT_FLAG_MINOR = 4;

    // Struct sizes: uffdio_api {api, features, ioctls}, uffdio_range {start, len},
    // uffdio_register {range, mode, ioctls}, uffdio_writeprotect {range, mode}, uffd_msg (32 B, packed),
    // uffdio_copy {dst, src, len, mode, s64 copy}, uffdio_zeropage / uffdio_continue / uffdio_poison
    // {range, mode, s64 zeropage / mapped / updated}. The last s64 is the kernel's answer (bytes done or -errno).
    static final int SIZEOF_API = 24, SIZEOF_RANGE = 16, SIZEOF_REGISTER = 32, SIZEOF_WRITEPROTECT = 24,
            SIZEOF_MSG = 32, SIZEOF_COPY = 40, SIZEOF_ZEROPAGE = 32, SIZEOF_CONTINUE = 32, SIZEOF_POISON = 32;
    private static final int UFFDIO = 0xAA;
    public static final long UFFDIO_API = Ioc.iowr(UFFDIO, 0x3F, SIZEOF_API);
    public static final long UFFDIO_REGISTER = Ioc.iowr(UFFDIO, 0x00, SIZEOF_REGISTER);
    public static final long UFFDIO_UNREGISTER = Ioc.ior(UFFDIO, 0x01, SIZEOF_RANGE);
    public static final long UFFDIO_WRITEPROTECT = Ioc.iowr(UFFDIO, 0x06, SIZEOF_WRITEPROTECT);
    /** {@code _IOR} although the kernel only reads the range: the header's historical direction, kept for the ABI. */
    public static final long UFFDIO_WAKE = Ioc.ior(UFFDIO, 0x02, SIZEOF_RANGE);
    public static final long UFFDIO_COPY = Ioc.iowr(UFFDIO, 0x03, SIZEOF_COPY);
    public static final long UFFDIO_ZEROPAGE = Ioc.iowr(UFFDIO, 0x04, SIZEOF_ZEROPAGE);
    public static final long UFFDIO_CONTINUE = Ioc.iowr(UFFDIO, 0x07, SIZEOF_CONTINUE);
    /** Linux 6.6+ ({@link #FEATURE_POISON}). */
    public static final long UFFDIO_POISON = Ioc.iowr(UFFDIO, 0x08, SIZEOF_POISON);

    private static final MethodHandle READ = Native.errnoCall("read", FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_LONG));
    private static final MethodHandle POLL = Native.errnoCall("poll", FunctionDescriptor.of(C_INT, C_POINTER, C_LONG, C_INT));
    private static final short POLLIN = 1;

    /** What a userfaultfd reports. */
    public sealed interface Event permits Pagefault, Fork, Remap, Remove, Unmap, Unknown {}

    /** A fault in a registered range; {@code flags} holds {@link #PAGEFAULT_FLAG_WRITE} etc. */
    public record Pagefault(long address, long flags, int threadId) implements Event {
        public boolean write() {
            return (flags & PAGEFAULT_FLAG_WRITE) != 0;
        }

        public boolean writeProtect() {
            return (flags & PAGEFAULT_FLAG_WP) != 0;
        }

        /** A MINOR fault: the page is in the page cache but not mapped here; answer with {@link #continueRange}. */
        public boolean minor() {
            return (flags & PAGEFAULT_FLAG_MINOR) != 0;
        }
    }

    /** The process forked; {@code ufd} is the child's new userfaultfd, installed in this process. */
    public record Fork(int ufd) implements Event {}

    /** {@code mremap} moved {@code len} bytes from {@code from} to {@code to}. */
    public record Remap(long from, long to, long len) implements Event {}

    /** {@code madvise(DONTNEED/REMOVE)} or a hole punch dropped {@code [start, end)}. */
    public record Remove(long start, long end) implements Event {}

    /** {@code munmap} (or an overlapping mmap) removed {@code [start, end)}. */
    public record Unmap(long start, long end) implements Event {}

    /** An event type this class does not know. */
    public record Unknown(int type) implements Event {}

    /** What UFFDIO_API answered: the features granted and the ioctls available on the fd. */
    public record Api(long features, long ioctls) {
        public boolean has(long feature) {
            return (features & feature) == feature;
        }
    }

    private final int fd;
    private final AtomicBoolean closed = new AtomicBoolean();

    private Userfaultfd(int fd) {
        this.fd = fd;
    }

    /**
     * {@code userfaultfd(O_CLOEXEC | O_NONBLOCK [| UFFD_USER_MODE_ONLY])}. Without user-mode-only the
     * caller needs CAP_SYS_PTRACE or {@code vm.unprivileged_userfaultfd=1}.
     */
    public static Userfaultfd open(boolean userModeOnly) {
        int flags = Posix.O_CLOEXEC | Posix.O_NONBLOCK | (userModeOnly ? UFFD_USER_MODE_ONLY : 0);
        long r = Posix.syscallRaw(Arch.CURRENT.sysUserfaultfd(), flags, 0, 0, 0, 0, 0);
        if (r < 0) throw new SyscallException((int) -r, "userfaultfd(" + Fmt.hex(flags) + ")");
        return new Userfaultfd((int) r);
    }

    /**
     * A userfaultfd another process created and passed over a unix socket (SCM_RIGHTS), already past its
     * UFFDIO_API handshake: its ioctls act on the creator's memory. Closing this closes only the descriptor.
     */
    public static Userfaultfd adopt(int fd) {
        if (fd < 0) throw new IllegalArgumentException("not a descriptor: " + fd);
        return new Userfaultfd(fd);
    }

    public int fd() {
        checkOpen("fd()");
        return fd;
    }

    /** The UFFDIO_API handshake asking for {@code features}; must be the first ioctl, and only once. */
    public Api api(long features) {
        checkOpen("api()");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(SIZEOF_API, 8);
            s.set(ValueLayout.JAVA_LONG, 0, UFFD_API);
            s.set(ValueLayout.JAVA_LONG, 8, features);
            int r = Posix.ioctlRaw(fd, UFFDIO_API, s);
            if (r < 0) throw new SyscallException(-r, "ioctl(" + fd + ", UFFDIO_API, features=" + Fmt.hex(features) + ")");
            return new Api(s.get(ValueLayout.JAVA_LONG, 8), s.get(ValueLayout.JAVA_LONG, 16));
        }
    }

    /**
     * UFFDIO_REGISTER of {@code [start, start+len)} with {@link #MODE_MISSING}/{@link #MODE_WP}/{@link #MODE_MINOR};
     * returns the range ioctls, a mask of {@code 1L << nr} ({@code nr} 0x03 = UFFDIO_COPY, 0x04 = UFFDIO_ZEROPAGE, ...).
     */
    public long register(long start, long len, long mode) {
        checkOpen("register()");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(SIZEOF_REGISTER, 8);
            s.set(ValueLayout.JAVA_LONG, 0, start);
            s.set(ValueLayout.JAVA_LONG, 8, len);
            s.set(ValueLayout.JAVA_LONG, 16, mode);
            int r = Posix.ioctlRaw(fd, UFFDIO_REGISTER, s);
            if (r < 0) throw new SyscallException(-r, "ioctl(" + fd + ", UFFDIO_REGISTER, " + Fmt.hex(start) + ", "
                    + Fmt.size(len) + ", mode=" + mode + ")");
            return s.get(ValueLayout.JAVA_LONG, 24);
        }
    }

    public void unregister(long start, long len) {
        checkOpen("unregister()");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = range(a, SIZEOF_RANGE, start, len);
            int r = Posix.ioctlRaw(fd, UFFDIO_UNREGISTER, s);
            if (r < 0) throw new SyscallException(-r, "ioctl(" + fd + ", UFFDIO_UNREGISTER, " + Fmt.hex(start) + ", " + Fmt.size(len) + ")");
        }
    }

    /** UFFDIO_WRITEPROTECT: arm ({@code protect}) or release write protection of a WP-registered range. */
    public void writeProtect(long start, long len, boolean protect) {
        checkOpen("writeProtect()");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = range(a, SIZEOF_WRITEPROTECT, start, len);
            s.set(ValueLayout.JAVA_LONG, 16, protect ? WRITEPROTECT_MODE_WP : 0);
            int r = Posix.ioctlRaw(fd, UFFDIO_WRITEPROTECT, s);
            if (r < 0) throw new SyscallException(-r, "ioctl(" + fd + ", UFFDIO_WRITEPROTECT, " + Fmt.hex(start) + ", "
                    + Fmt.size(len) + ", " + (protect ? "WP" : "0") + ")");
        }
    }

    /**
     * UFFDIO_COPY: atomically maps fresh pages holding a copy of {@code [src, src+len)} at the missing pages of
     * {@code [dst, dst+len)} and wakes the threads waiting on them (unless {@link #COPY_MODE_DONTWAKE}). This is
     * how a MISSING fault gets content: the handler cannot simply write the page, since that write would fault on
     * the same registered range and wait for the handler. {@code dst} and {@code len} must be page-aligned
     * (huge-page-aligned on hugetlb); {@code src} need only be readable memory of this process.
     *
     * <p>Returns the bytes mapped: {@code len}, or fewer when the kernel stopped early (it answers EAGAIN with the
     * partial count; that count is returned, not thrown, so the caller goes on at {@code dst + count}, and that
     * next call names why it stopped). Failures with nothing done throw {@link SyscallException}:
     * <ul>
     * <li>EEXIST: a page is already mapped at {@code dst}: another handler thread or the kernel resolved it
     *     first. Not a failure of the restore; check with {@code e.is(Errno.EEXIST)} and, if the winner may have
     *     used DONTWAKE, {@link #wake} the range.
     * <li>EAGAIN: the address space is changing (fork, mremap, munmap, madvise whose non-cooperative event is
     *     unread): read the events, then retry.
     * <li>ENOENT: {@code [dst, dst+len)} is not inside one VMA registered with this userfaultfd (or it went away).
     * <li>EINVAL: misaligned {@code dst}/{@code len}, an unknown mode bit, WP on a range not registered for WP.
     * <li>EFAULT: {@code src} is not readable; ESRCH: the process whose mm this is has exited; ENOMEM.
     * </ul>
     */
    public long copy(long dst, long src, long len, long mode) {
        checkOpen("copy()");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(SIZEOF_COPY, 8);
            s.set(ValueLayout.JAVA_LONG, 0, dst);
            s.set(ValueLayout.JAVA_LONG, 8, src);
            s.set(ValueLayout.JAVA_LONG, 16, len);
            s.set(ValueLayout.JAVA_LONG, 24, mode);
            int r = Posix.ioctlRaw(fd, UFFDIO_COPY, s);
            long done = s.get(ValueLayout.JAVA_LONG, 32);
            if (r == 0 || (r == -Errno.EAGAIN.number && done > 0)) return done;
            throw failure(-r, "ioctl(" + fd + ", UFFDIO_COPY, " + Fmt.hex(dst) + ", " + Fmt.size(len) + ", src="
                    + Fmt.hex(src) + ", mode=" + mode + ")");
        }
    }

    /**
     * UFFDIO_ZEROPAGE: resolves the missing pages of {@code [start, start+len)} as zeros without a source buffer
     * (a restore's "this page was never written"). On private anonymous memory the kernel maps the shared zero
     * page, so nothing is allocated until the page is written; on shmem it allocates a zeroed page; hugetlb has
     * no zeropage (EINVAL). Wakes the waiters unless {@link #ZEROPAGE_MODE_DONTWAKE}. Returns the bytes
     * resolved, with {@link #copy}'s partial count and errors (EEXIST: already mapped; EAGAIN: retry).
     */
    public long zeroPage(long start, long len, long mode) {
        checkOpen("zeroPage()");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = range(a, SIZEOF_ZEROPAGE, start, len);
            s.set(ValueLayout.JAVA_LONG, 16, mode);
            int r = Posix.ioctlRaw(fd, UFFDIO_ZEROPAGE, s);
            long done = s.get(ValueLayout.JAVA_LONG, 24);
            if (r == 0 || (r == -Errno.EAGAIN.number && done > 0)) return done;
            throw failure(-r, "ioctl(" + fd + ", UFFDIO_ZEROPAGE, " + Fmt.hex(start) + ", " + Fmt.size(len) + ", mode=" + mode + ")");
        }
    }

    /**
     * UFFDIO_CONTINUE: answers MINOR faults ({@link #MODE_MINOR} on shmem / hugetlbfs): the page is already in
     * the page cache, so instead of copying, the handler first makes the page cache right (writes the restored
     * bytes through the file or a second, unregistered mapping) and then has the kernel map those page-cache
     * pages at {@code [start, start+len)} and wake the waiters (unless {@link #CONTINUE_MODE_DONTWAKE};
     * {@link #CONTINUE_MODE_WP} maps them write-protected). Returns the bytes mapped, with {@link #copy}'s
     * partial count and errors; EFAULT here means the page cache has no page at that offset (a hole: fill it
     * first), EEXIST that the page is already mapped.
     */
    public long continueRange(long start, long len, long mode) {
        checkOpen("continueRange()");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = range(a, SIZEOF_CONTINUE, start, len);
            s.set(ValueLayout.JAVA_LONG, 16, mode);
            int r = Posix.ioctlRaw(fd, UFFDIO_CONTINUE, s);
            long done = s.get(ValueLayout.JAVA_LONG, 24);
            if (r == 0 || (r == -Errno.EAGAIN.number && done > 0)) return done;
            throw failure(-r, "ioctl(" + fd + ", UFFDIO_CONTINUE, " + Fmt.hex(start) + ", " + Fmt.size(len) + ", mode=" + mode + ")");
        }
    }

    /**
     * UFFDIO_POISON (Linux 6.6+, {@link #FEATURE_POISON}): resolves the missing pages of {@code [start, start+len)}
     * with poison markers, so that every later access gets SIGBUS (a kernel access EFAULT) as on a memory error:
     * for a restore whose source copy of the page is lost, which must not hand out zeros or stale data instead.
     * Returns the bytes poisoned, with {@link #copy}'s partial count and errors.
     */
    public long poison(long start, long len, long mode) {
        checkOpen("poison()");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = range(a, SIZEOF_POISON, start, len);
            s.set(ValueLayout.JAVA_LONG, 16, mode);
            int r = Posix.ioctlRaw(fd, UFFDIO_POISON, s);
            long done = s.get(ValueLayout.JAVA_LONG, 24);
            if (r == 0 || (r == -Errno.EAGAIN.number && done > 0)) return done;
            throw failure(-r, "ioctl(" + fd + ", UFFDIO_POISON, " + Fmt.hex(start) + ", " + Fmt.size(len) + ", mode=" + mode + ")");
        }
    }

    /**
     * UFFDIO_WAKE: wakes the threads waiting on faults in {@code [start, start+len)} without touching the
     * mapping. For a handler that resolved a batch with the DONTWAKE modes (one wake for many pages), or that
     * lost the race (EEXIST) to a resolver that did not wake. A thread woken while its page is still missing
     * faults again and queues a new event.
     */
    public void wake(long start, long len) {
        checkOpen("wake()");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = range(a, SIZEOF_RANGE, start, len);
            int r = Posix.ioctlRaw(fd, UFFDIO_WAKE, s);
            if (r < 0) throw new SyscallException(-r, "ioctl(" + fd + ", UFFDIO_WAKE, " + Fmt.hex(start) + ", " + Fmt.size(len) + ")");
        }
    }

    /** The exception of a resolving ioctl that did nothing, with what the errno means for a fault handler. */
    private static SyscallException failure(int errno, String call) {
        String detail = errno == Errno.EEXIST.number ? "already mapped (another thread or the kernel resolved it first)"
                : errno == Errno.EAGAIN.number ? "the address space is changing (fork/mremap/munmap/madvise): read the events, retry"
                : errno == Errno.ENOENT.number ? "not inside one VMA registered with this userfaultfd"
                : null;
        return new SyscallException(errno, call, detail);
    }

    /** The next queued event, or null when none is queued (the fd is non-blocking). */
    public Event read() {
        checkOpen("read()");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment msg = a.allocate(SIZEOF_MSG, 8);
            MemorySegment st = Native.state();
            long r = (long) READ.invokeExact(st, fd, msg, (long) SIZEOF_MSG);
            if (r < 0) {
                int e = Native.errno(st);
                if (e == Errno.EAGAIN.number) return null;
                throw new SyscallException(e, "read(userfaultfd " + fd + ", " + SIZEOF_MSG + ")");
            }
            if (r != SIZEOF_MSG) throw new IllegalStateException("short uffd_msg read: " + r + " bytes");
            return decode(msg);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Waits up to {@code timeout} (poll) for an event and returns it, or null if none came. */
    public Event await(Duration timeout) {
        checkOpen("await()");
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            Event e = read();
            if (e != null) return e;
            long left = deadline - System.nanoTime();
            if (left <= 0) return null;
            poll((int) Math.min(Integer.MAX_VALUE, Math.max(1, left / 1_000_000)));
        }
    }

    private void poll(int millis) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment pfd = a.allocate(8, 4); // struct pollfd {int fd; short events; short revents;}
            pfd.set(ValueLayout.JAVA_INT, 0, fd);
            pfd.set(ValueLayout.JAVA_SHORT, 4, POLLIN);
            MemorySegment st = Native.state();
            int r = (int) POLL.invokeExact(st, pfd, 1L, millis);
            if (r < 0 && Native.errno(st) != Errno.EINTR.number)
                throw new SyscallException(Native.errno(st), "poll(userfaultfd " + fd + ", " + millis + " ms)");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Decodes one {@code struct uffd_msg}: event@0, the argument union from offset 8. */
    static Event decode(MemorySegment m) {
        int event = Byte.toUnsignedInt(m.get(ValueLayout.JAVA_BYTE, 0));
        long a0 = m.get(ValueLayout.JAVA_LONG, 8), a1 = m.get(ValueLayout.JAVA_LONG, 16), a2 = m.get(ValueLayout.JAVA_LONG, 24);
        return switch (event) {
            case EVENT_PAGEFAULT -> new Pagefault(a1, a0, (int) a2);
            case EVENT_FORK -> new Fork((int) a0);
            case EVENT_REMAP -> new Remap(a0, a1, a2);
            case EVENT_REMOVE -> new Remove(a0, a1);
            case EVENT_UNMAP -> new Unmap(a0, a1);
            default -> new Unknown(event);
        };
    }

    private static MemorySegment range(Arena a, int size, long start, long len) {
        MemorySegment s = a.allocate(size, 8);
        s.set(ValueLayout.JAVA_LONG, 0, start);
        s.set(ValueLayout.JAVA_LONG, 8, len);
        return s;
    }

    private void checkOpen(String call) {
        if (closed.get()) throw UseAfterClose.of("userfaultfd " + fd, call);
    }

    /** Closes the fd once; registered ranges are unregistered by the kernel. */
    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) Posix.close(fd);
    }
}
