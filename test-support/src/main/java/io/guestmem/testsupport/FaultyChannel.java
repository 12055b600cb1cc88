package io.guestmem.testsupport;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.function.LongPredicate;

/**
 * One end of a stream that fails on purpose, for the tests of what a peer does when the other goes wrong:
 * {@code flipWrite} names written byte offsets to flip (a record damaged on the way), {@code dieAfterRead} the
 * count of bytes read after which the peer is gone (the socket closed, an IOException). Not thread-safe.
 */
public record FaultyChannel(SocketChannel ch, LongPredicate flipWrite, long dieAfterRead, long[] counts) implements ByteChannel {
    public FaultyChannel(SocketChannel ch, LongPredicate flipWrite, long dieAfterRead) {
        this(ch, flipWrite, dieAfterRead, new long[2]);
    }

    /** Flips byte {@code at} of what is written, and works otherwise. */
    public static FaultyChannel flipping(SocketChannel ch, long at) {
        return new FaultyChannel(ch, o -> o == at, Long.MAX_VALUE);
    }

    /** Gone after reading {@code bytes}. */
    public static FaultyChannel dyingAfterRead(SocketChannel ch, long bytes) {
        return new FaultyChannel(ch, o -> false, bytes);
    }

    /** Two connected unix stream sockets, through a socket file in {@code dir} (removed with the server). */
    public static SocketChannel[] pair(Path dir) throws IOException {
        Path sock = dir.resolve("pair-" + System.nanoTime() + ".sock");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(sock));
            SocketChannel a = SocketChannel.open(StandardProtocolFamily.UNIX);
            a.connect(UnixDomainSocketAddress.of(sock));
            return new SocketChannel[] {a, server.accept()};
        }
    }

    @Override
    public int read(ByteBuffer b) throws IOException {
        if (counts[0] >= dieAfterRead) {
            ch.close();
            throw new IOException("the peer process died");
        }
        int n = ch.read(b.limit((int) Math.min(b.limit(), b.position() + dieAfterRead - counts[0])));
        counts[0] += Math.max(n, 0);
        return n;
    }

    @Override
    public int write(ByteBuffer b) throws IOException {
        ByteBuffer copy = ByteBuffer.allocate(b.remaining()).put(b.duplicate()).flip();
        for (int i = 0; i < copy.limit(); i++) if (flipWrite.test(counts[1] + i)) copy.put(i, (byte) (copy.get(i) ^ 0x40));
        int n = ch.write(copy);
        b.position(b.position() + n);
        counts[1] += n;
        return n;
    }

    @Override
    public boolean isOpen() {
        return ch.isOpen();
    }

    @Override
    public void close() throws IOException {
        ch.close();
    }
}
