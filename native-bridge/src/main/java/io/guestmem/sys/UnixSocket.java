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
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;

/**
 * A connected {@code AF_UNIX} stream socket, owned, that carries file descriptors: {@code sendmsg} with an
 * {@code SCM_RIGHTS} control message, {@code recvmsg} that takes them (close-on-exec). Java's own
 * {@code SocketChannel} speaks AF_UNIX but cannot pass a descriptor; a userfaultfd handed to a fault handler in
 * another process, or a vhost-user front-end's memory fds, need exactly that.
 *
 * <p>Descriptors received belong to the caller, who closes them. A message whose descriptors the kernel had
 * to drop ({@code MSG_CTRUNC}: more than the caller made room for) is refused, after closing those that did
 * arrive. Sends use {@code MSG_NOSIGNAL}: a peer gone is {@code EPIPE}, never a SIGPIPE. {@link #close()} is
 * idempotent; a use after it throws ({@link UseAfterClose}).
 */
public final class UnixSocket implements AutoCloseable {
    private static final int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;
    private static final int SOL_SOCKET = 1, SCM_RIGHTS = 1;
    private static final int MSG_CTRUNC = 0x8, MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000;
    /** The most descriptors one message carries (the kernel's SCM_MAX_FD is 253). */
    public static final int MAX_FDS = 253;
    // struct msghdr (LP64: the same on x86-64 and arm64), struct cmsghdr, struct sockaddr_un
    private static final long MSG_NAME = 0, MSG_IOV = 16, MSG_IOVLEN = 24, MSG_CONTROL = 32, MSG_CONTROLLEN = 40,
            MSG_FLAGS = 48, MSGHDR_BYTES = 56, CMSG_HDR = 16, SUN_PATH = 2, SOCKADDR_UN_BYTES = 110;

    private static final MethodHandle SOCKET = Native.errnoCall("socket", FunctionDescriptor.of(C_INT, C_INT, C_INT, C_INT));
    private static final MethodHandle SOCKETPAIR = Native.errnoCall("socketpair",
            FunctionDescriptor.of(C_INT, C_INT, C_INT, C_INT, C_POINTER));
    private static final MethodHandle BIND = Native.errnoCall("bind", FunctionDescriptor.of(C_INT, C_INT, C_POINTER, C_INT));
    private static final MethodHandle LISTEN = Native.errnoCall("listen", FunctionDescriptor.of(C_INT, C_INT, C_INT));
    private static final MethodHandle ACCEPT4 = Native.errnoCall("accept4",
            FunctionDescriptor.of(C_INT, C_INT, C_POINTER, C_POINTER, C_INT));
    private static final MethodHandle CONNECT = Native.errnoCall("connect", FunctionDescriptor.of(C_INT, C_INT, C_POINTER, C_INT));
    private static final MethodHandle SENDMSG = Native.errnoCall("sendmsg", FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_INT));
    private static final MethodHandle RECVMSG = Native.errnoCall("recvmsg", FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_INT));

    private final int fd;
    private final String what;
    private volatile boolean closed;

    private UnixSocket(int fd, String what) {
        this.fd = fd;
        this.what = what;
    }

    /** What one {@link #receive} got: {@code bytes} of data (0: the peer closed the stream) and the descriptors. */
    public record Received(int bytes, int[] fds) {
        public Received {
            fds = fds.clone();
        }

        @Override
        public int[] fds() {
            return fds.clone();
        }

        public boolean endOfStream() {
            return bytes == 0 && fds.length == 0;
        }
    }

    /** Two connected ends ({@code socketpair}); each is closed on its own. */
    public record Pair(UnixSocket first, UnixSocket second) implements AutoCloseable {
        @Override
        public void close() {
            try {
                first.close();
            } finally {
                second.close();
            }
        }
    }

    public static Pair pair() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment fds = a.allocate(C_INT, 2);
            MemorySegment st = Native.state();
            int r = (int) SOCKETPAIR.invokeExact(st, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
            if (r < 0) throw new SyscallException(Native.errno(st), "socketpair(AF_UNIX, SOCK_STREAM)");
            return new Pair(new UnixSocket(fds.getAtIndex(C_INT, 0), "socketpair end"),
                    new UnixSocket(fds.getAtIndex(C_INT, 1), "socketpair end"));
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** A socket bound to {@code path} and listening; {@link #accept} takes a connection. The path is not removed on close. */
    public static UnixSocket listen(String path) {
        int s = socket();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = Native.state();
            int r = (int) BIND.invokeExact(st, s, address(a, path), (int) SOCKADDR_UN_BYTES);
            if (r < 0) throw new SyscallException(Native.errno(st), "bind(AF_UNIX " + path + ")");
            r = (int) LISTEN.invokeExact(st, s, 16);
            if (r < 0) throw new SyscallException(Native.errno(st), "listen(" + path + ")");
            return new UnixSocket(s, "listening on " + path);
        } catch (Throwable t) {
            Posix.close(s);
            throw Native.rethrow(t);
        }
    }

    /** {@code connect} to a listening socket at {@code path}. */
    public static UnixSocket connect(String path) {
        int s = socket();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = Native.state();
            int r;
            do {
                r = (int) CONNECT.invokeExact(st, s, address(a, path), (int) SOCKADDR_UN_BYTES);
            } while (r < 0 && Native.errno(st) == Errno.EINTR.number);
            if (r < 0) throw new SyscallException(Native.errno(st), "connect(AF_UNIX " + path + ")");
            return new UnixSocket(s, "connected to " + path);
        } catch (Throwable t) {
            Posix.close(s);
            throw Native.rethrow(t);
        }
    }

    /** Takes one connection of this listening socket, waiting at most {@code timeout}: ETIMEDOUT past it. */
    public UnixSocket accept(Duration timeout) {
        if (!awaitReadable(timeout)) throw new SyscallException(Errno.ETIMEDOUT.number,
                "accept(" + what + ") within " + timeout.toMillis() + " ms");
        try {
            MemorySegment st = Native.state();
            int c;
            do {
                c = (int) ACCEPT4.invokeExact(st, fd(), MemorySegment.NULL, MemorySegment.NULL, SOCK_CLOEXEC);
            } while (c < 0 && Native.errno(st) == Errno.EINTR.number);
            if (c < 0) throw new SyscallException(Native.errno(st), "accept4(" + what + ")");
            return new UnixSocket(c, "accepted on " + what.replace("listening on ", ""));
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * Sends all of {@code data} (position to limit; the buffer's position moves to its limit), the descriptors
     * with its first byte. EPIPE when the peer is gone.
     */
    public void send(ByteBuffer data, int... fds) {
        if (fds.length > MAX_FDS) throw new IllegalArgumentException(fds.length + " descriptors in one message (at most " + MAX_FDS + ")");
        if (!data.hasRemaining() && fds.length > 0) throw new IllegalArgumentException("descriptors need at least one byte of data");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(Math.max(1, data.remaining()));
            buf.copyFrom(MemorySegment.ofBuffer(data));
            MemorySegment iov = a.allocate(16), msg = a.allocate(MSGHDR_BYTES);
            long sent = 0, total = data.remaining();
            int[] pending = fds;
            while (sent < total) {
                iov.set(C_POINTER, 0, buf.asSlice(sent));
                iov.set(C_LONG, 8, total - sent);
                msg.fill((byte) 0);
                msg.set(C_POINTER, MSG_IOV, iov);
                msg.set(C_LONG, MSG_IOVLEN, 1);
                if (pending.length > 0) {
                    long space = CMSG_HDR + align8(4L * pending.length);
                    MemorySegment cmsg = a.allocate(space, 8);
                    cmsg.set(C_LONG, 0, CMSG_HDR + 4L * pending.length);
                    cmsg.set(C_INT, 8, SOL_SOCKET);
                    cmsg.set(C_INT, 12, SCM_RIGHTS);
                    for (int i = 0; i < pending.length; i++) cmsg.set(C_INT, CMSG_HDR + 4L * i, pending[i]);
                    msg.set(C_POINTER, MSG_CONTROL, cmsg);
                    msg.set(C_LONG, MSG_CONTROLLEN, space);
                }
                MemorySegment st = Native.state();
                long n = (long) SENDMSG.invokeExact(st, fd(), msg, MSG_NOSIGNAL);
                if (n < 0) {
                    int e = Native.errno(st);
                    if (e == Errno.EINTR.number) continue;
                    throw new SyscallException(e, "sendmsg(" + what + ", " + (total - sent) + " bytes, "
                            + pending.length + " fds)");
                }
                sent += n;
                pending = new int[0]; // the descriptors went with the first byte sent
            }
            data.position(data.limit());
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * One {@code recvmsg} into {@code dst} (from its position; the position moves past the bytes read), with room
     * for {@code maxFds} descriptors. A stream may split a message: the descriptors come with the first byte of
     * the message they were sent with.
     */
    public Received receive(ByteBuffer dst, int maxFds) {
        if (maxFds < 0 || maxFds > MAX_FDS) throw new IllegalArgumentException("maxFds " + maxFds);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(Math.max(1, dst.remaining()));
            MemorySegment iov = a.allocate(16), msg = a.allocate(MSGHDR_BYTES);
            long space = maxFds == 0 ? 0 : CMSG_HDR + align8(4L * maxFds);
            MemorySegment control = space == 0 ? MemorySegment.NULL : a.allocate(space, 8);
            iov.set(C_POINTER, 0, buf);
            iov.set(C_LONG, 8, dst.remaining());
            msg.fill((byte) 0);
            msg.set(C_POINTER, MSG_NAME, MemorySegment.NULL);
            msg.set(C_POINTER, MSG_IOV, iov);
            msg.set(C_LONG, MSG_IOVLEN, 1);
            msg.set(C_POINTER, MSG_CONTROL, control);
            msg.set(C_LONG, MSG_CONTROLLEN, space);
            MemorySegment st = Native.state();
            long n;
            do {
                n = (long) RECVMSG.invokeExact(st, fd(), msg, MSG_CMSG_CLOEXEC);
            } while (n < 0 && Native.errno(st) == Errno.EINTR.number);
            if (n < 0) throw new SyscallException(Native.errno(st), "recvmsg(" + what + ", " + dst.remaining() + " bytes)");
            int[] fds = takeFds(control, msg.get(C_LONG, MSG_CONTROLLEN));
            // the control buffer rounds up to 8 bytes: an odd maxFds has room for one more, refused as the kernel's truncation is
            if ((msg.get(C_INT, MSG_FLAGS) & MSG_CTRUNC) != 0 || fds.length > maxFds) {
                for (int f : fds) Posix.close(f);
                throw new SyscallException(Errno.EMSGSIZE.number, "recvmsg(" + what + "): the message carried more than "
                        + maxFds + " descriptors (MSG_CTRUNC)");
            }
            dst.put(buf.asSlice(0, n).asByteBuffer());
            return new Received((int) n, fds);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * Reads until {@code dst} is full; false if the stream ended first (nothing or part read). A descriptor
     * arriving meanwhile is refused (EMSGSIZE, see the class comment): use {@link #receive} where one is expected.
     */
    public boolean readFully(ByteBuffer dst) {
        while (dst.hasRemaining()) {
            Received r = receive(dst, 0);
            if (r.bytes() == 0) return false;
        }
        return true;
    }

    /** Waits until the socket has data (or a connection, or the peer's close) to read; false at the timeout. */
    public boolean awaitReadable(Duration timeout) {
        int ms = (int) Math.max(0, Math.min(Integer.MAX_VALUE, timeout.toMillis()));
        return Poll.readable(new int[] {fd()}, 1, new short[1], ms) > 0;
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

    @Override
    public String toString() {
        return "unix socket fd " + fd + " (" + what + ")";
    }

    private static int socket() {
        try {
            MemorySegment st = Native.state();
            int s = (int) SOCKET.invokeExact(st, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (s < 0) throw new SyscallException(Native.errno(st), "socket(AF_UNIX, SOCK_STREAM)");
            return s;
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    private static MemorySegment address(Arena a, String path) {
        byte[] p = path.getBytes(StandardCharsets.UTF_8);
        if (p.length >= SOCKADDR_UN_BYTES - SUN_PATH) throw new IllegalArgumentException("a unix socket path has at most "
                + (SOCKADDR_UN_BYTES - SUN_PATH - 1) + " bytes: " + path);
        MemorySegment sa = a.allocate(SOCKADDR_UN_BYTES);
        sa.set(ValueLayout.JAVA_SHORT, 0, (short) AF_UNIX);
        MemorySegment.copy(p, 0, sa, ValueLayout.JAVA_BYTE, SUN_PATH, p.length);
        return sa;
    }

    /** The descriptors of every SCM_RIGHTS message in the control buffer the kernel filled ({@code len} bytes). */
    private static int[] takeFds(MemorySegment control, long len) {
        int[] out = new int[0];
        long at = 0;
        while (control != MemorySegment.NULL && at + CMSG_HDR <= len) {
            long clen = control.get(C_LONG, at);
            if (clen < CMSG_HDR || at + clen > len) break;
            if (control.get(C_INT, at + 8) == SOL_SOCKET && control.get(C_INT, at + 12) == SCM_RIGHTS) {
                int n = (int) ((clen - CMSG_HDR) / 4), k = out.length;
                out = Arrays.copyOf(out, k + n);
                for (int i = 0; i < n; i++) out[k + i] = control.get(C_INT, at + CMSG_HDR + 4L * i);
            }
            at += align8(clen);
        }
        return out;
    }

    private static long align8(long n) {
        return (n + 7) & ~7L;
    }
}
