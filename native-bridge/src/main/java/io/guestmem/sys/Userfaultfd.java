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
 * registration (MISSING / WP), write-protection, and the events it delivers decoded into records.
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

    // UFFD_EVENT_* (uffd_msg.event) and UFFD_PAGEFAULT_FLAG_*.
    public static final int EVENT_PAGEFAULT = 0x12, EVENT_FORK = 0x13, EVENT_REMAP = 0x14, EVENT_REMOVE = 0x15,
            EVENT_UNMAP = 0x16;
    public static final long PAGEFAULT_FLAG_WRITE = 1, PAGEFAULT_FLAG_WP = 2, PAGEFAULT_FLAG_MINOR = 4;

    // Struct sizes: uffdio_api {api, features, ioctls}, uffdio_range {start, len},
    // uffdio_register {range, mode, ioctls}, uffdio_writeprotect {range, mode}, uffd_msg (32 B, packed).
    static final int SIZEOF_API = 24, SIZEOF_RANGE = 16, SIZEOF_REGISTER = 32, SIZEOF_WRITEPROTECT = 24,
            SIZEOF_MSG = 32;
    private static final int UFFDIO = 0xAA;
    public static final long UFFDIO_API = Ioc.iowr(UFFDIO, 0x3F, SIZEOF_API);
    public static final long UFFDIO_REGISTER = Ioc.iowr(UFFDIO, 0x00, SIZEOF_REGISTER);
    public static final long UFFDIO_UNREGISTER = Ioc.ior(UFFDIO, 0x01, SIZEOF_RANGE);
    public static final long UFFDIO_WRITEPROTECT = Ioc.iowr(UFFDIO, 0x06, SIZEOF_WRITEPROTECT);

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

    /** UFFDIO_REGISTER of {@code [start, start+len)} with {@link #MODE_MISSING}/{@link #MODE_WP}; returns the range ioctls. */
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
