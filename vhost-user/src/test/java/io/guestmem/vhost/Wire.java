package io.guestmem.vhost;

import io.guestmem.sys.Memfd;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

/** A front-end's side of the wire, for tests: messages as bytes, memfds to send, and the count of those left open. */
final class Wire {
    private Wire() {}

    static ByteBuffer message(int code, int flags, byte[] payload) {
        return message(code, flags, payload.length, payload);
    }

    /** A header that claims {@code size} bytes, followed by {@code payload} (which may be shorter or longer). */
    static ByteBuffer message(int code, int flags, int size, byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(12 + payload.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(code).putInt(flags).putInt(size).put(payload).flip();
        return b;
    }

    static byte[] u64(long v) {
        return ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(v).array();
    }

    static byte[] le(Object... values) {
        ByteBuffer b = ByteBuffer.allocate(512).order(ByteOrder.LITTLE_ENDIAN);
        for (Object v : values) {
            if (v instanceof Long l) b.putLong(l);
            else if (v instanceof Integer i) b.putInt(i);
            else throw new IllegalArgumentException(String.valueOf(v));
        }
        byte[] out = new byte[b.position()];
        b.flip().get(out);
        return out;
    }

    /** A memfd named {@code name} of {@code size} bytes. */
    static int memfd(String name, long size) {
        int fd = Memfd.create(name, 0);
        Memfd.ftruncate(fd, size);
        return fd;
    }

    /** How many of this process's descriptors are memfds whose name starts with {@code prefix}. */
    static long openMemfds(String prefix) throws IOException {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.filter(p -> {
                try {
                    return Files.readSymbolicLink(p).toString().startsWith("/memfd:" + prefix);
                } catch (IOException gone) {
                    return false; // the descriptor the listing itself used
                }
            }).count();
        }
    }
}
