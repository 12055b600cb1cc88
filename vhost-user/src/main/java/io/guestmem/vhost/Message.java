package io.guestmem.vhost;

import io.guestmem.sys.Posix;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One front-end message as the parser accepted it: the request, the header's flags, the payload
 * (little-endian, as the protocol's host order on x86-64 and arm64) and the descriptors that came with it.
 * The descriptors belong to whoever handles the message: it keeps them (a kick eventfd, a region's memfd) or
 * closes them ({@link #closeFds}).
 */
public record Message(Request request, int flags, byte[] payload, int[] fds) {
    /** Header flags: the protocol version in bits 0-1, a reply, a request for one (REPLY_ACK). */
    public static final int VERSION = 0x1, VERSION_MASK = 0x3, REPLY = 0x4, NEED_REPLY = 0x8;

    public Message {
        payload = payload.clone();
        fds = fds.clone();
    }

    @Override
    public byte[] payload() {
        return payload.clone();
    }

    @Override
    public int[] fds() {
        return fds.clone();
    }

    public boolean needsReply() {
        return (flags & NEED_REPLY) != 0;
    }

    /** The payload as a little-endian buffer of its own. */
    public ByteBuffer body() {
        return ByteBuffer.wrap(payload).order(ByteOrder.LITTLE_ENDIAN).asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }

    public long u64(int offset) {
        return body().getLong(offset);
    }

    public int u32(int offset) {
        return body().getInt(offset);
    }

    /** Closes every descriptor the message carried (a refusal, or a request that takes none for good). */
    public void closeFds() {
        closeAll(fds);
    }

    static void closeAll(int[] fds) {
        for (int fd : fds) {
            try {
                Posix.close(fd);
            } catch (RuntimeException ignored) {
                // already closed by the kernel's own refusal, nothing else to undo
            }
        }
    }

    @Override
    public String toString() {
        return request + " (flags 0x" + Integer.toHexString(flags) + ", " + payload.length + " bytes, " + fds.length + " fds)";
    }
}
