package io.guestmem.vhost;

import io.guestmem.sys.Errno;
import io.guestmem.sys.SyscallException;
import io.guestmem.sys.UnixSocket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * The framing of vhost-user messages on a connected unix socket: a 12-byte header ({@code u32 request,
 * u32 flags, u32 size}), {@code size} bytes of payload, the descriptors with the message's first byte.
 *
 * <p>{@link #read} returns one message checked against its {@link Request} or throws
 * {@link VhostUserException} naming what was wrong; whatever descriptors had arrived are closed first, so a
 * refused message leaks nothing. A payload larger than {@link #MAX_PAYLOAD} is refused on its header alone,
 * before anything is read for it: the stream cannot be resynchronised after a refusal anyway, and the caller
 * closes the connection.
 */
public final class MessageChannel implements AutoCloseable {
    public static final int HEADER_BYTES = 12;
    /** Larger than every request's payload (the biggest, GET_CONFIG, is 268 bytes). */
    public static final int MAX_PAYLOAD = 4096;

    private final UnixSocket socket;

    public MessageChannel(UnixSocket socket) {
        this.socket = socket;
    }

    public int fd() {
        return socket.fd();
    }

    /** The next message; null when the front-end closed the stream between two messages. */
    public Message read() {
        int[] fds = new int[0];
        try {
            ByteBuffer header = ByteBuffer.allocate(HEADER_BYTES).order(ByteOrder.LITTLE_ENDIAN);
            fds = fill(header, fds);
            if (header.position() == 0 && fds.length == 0) return null;
            if (header.hasRemaining())
                throw new VhostUserException(Errno.EPROTO, "header", "truncated: the stream ended after " + header.position()
                        + " of " + HEADER_BYTES + " bytes");
            int code = header.getInt(0), flags = header.getInt(4), size = header.getInt(8);
            String name = nameOf(code);
            if ((flags & Message.VERSION_MASK) != Message.VERSION)
                throw new VhostUserException(Errno.EPROTO, name, "version " + (flags & Message.VERSION_MASK) + " (this back-end speaks 1)");
            if (size < 0 || size > MAX_PAYLOAD)
                throw new VhostUserException(Errno.EMSGSIZE, name, "a payload of " + Integer.toUnsignedString(size)
                        + " bytes (at most " + MAX_PAYLOAD + ")");
            ByteBuffer payload = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
            fds = fill(payload, fds);
            if (payload.hasRemaining())
                throw new VhostUserException(Errno.EPROTO, name, "truncated: the stream ended after " + payload.position()
                        + " of " + size + " payload bytes");
            Request r = Request.of(code);
            if (r == null) throw new VhostUserException(Errno.ENOSYS, name, "a request this back-end does not serve");
            check(r, payload, fds.length);
            return new Message(r, flags, payload.array(), fds);
        } catch (RuntimeException e) {
            Message.closeAll(fds);
            throw e;
        }
    }

    /** Sends the reply to {@code request}: the header with REPLY set and {@code payload}. */
    public void reply(Request request, byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(HEADER_BYTES + payload.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(request.code).putInt(Message.VERSION | Message.REPLY).putInt(payload.length).put(payload).flip();
        socket.send(b);
    }

    /** Sends a reply that is one u64 (a feature mask, a count, REPLY_ACK's status). */
    public void replyU64(Request request, long value) {
        reply(request, ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(value).array());
    }

    @Override
    public void close() {
        socket.close();
    }

    /** Reads until {@code dst} is full or the stream ends; the fds that arrive meanwhile are added to {@code fds}. */
    private int[] fill(ByteBuffer dst, int[] fds) {
        while (dst.hasRemaining()) {
            UnixSocket.Received r;
            try {
                r = socket.receive(dst, Request.MAX_TABLE_REGIONS - fds.length);
            } catch (SyscallException e) {
                if (e.is(Errno.EMSGSIZE)) // the socket closed the ones that came: more than any request carries
                    throw new VhostUserException(Errno.EBADMSG, "message", "more than " + Request.MAX_TABLE_REGIONS + " descriptors");
                throw e;
            }
            if (r.fds().length > 0) {
                int k = fds.length;
                fds = Arrays.copyOf(fds, k + r.fds().length);
                System.arraycopy(r.fds(), 0, fds, k, r.fds().length);
            }
            if (r.bytes() == 0) break;
        }
        return fds;
    }

    private static String nameOf(int code) {
        Request r = Request.of(code);
        return r != null ? r.name() : "request " + Integer.toUnsignedString(code);
    }

    /** The payload size and the descriptor count {@code r} allows. */
    private static void check(Request r, ByteBuffer payload, int fds) {
        int size = payload.capacity();
        if (size < r.minPayload || size > r.maxPayload)
            throw new VhostUserException(Errno.EBADMSG, r.name(), "a payload of " + size + " bytes (this request has "
                    + (r.minPayload == r.maxPayload ? r.minPayload : r.minPayload + " to " + r.maxPayload) + ")");
        int expected = switch (r.fds) {
            case NONE -> 0;
            case ONE -> 1;
            case AT_MOST_ONE -> Math.min(fds, 1);
            case RING -> (payload.getLong(0) & Vring.NOFD) != 0 ? 0 : 1;
            case PER_REGION -> {
                int n = payload.getInt(0);
                if (n < 0 || n > Request.MAX_TABLE_REGIONS || size != 8 + n * MemoryRegion.BYTES)
                    throw new VhostUserException(Errno.EBADMSG, r.name(), n + " regions in " + size + " bytes (at most "
                            + Request.MAX_TABLE_REGIONS + ", " + MemoryRegion.BYTES + " bytes each after 8)");
                yield n;
            }
        };
        if (fds != expected)
            throw new VhostUserException(Errno.EBADMSG, r.name(), fds + " descriptors where the request carries " + expected);
    }
}
