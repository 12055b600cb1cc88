package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Descriptors cross a unix socket as the same open files; the refusals are the kernel's and ours. */
class UnixSocketTest {
    @TempDir
    Path dir;

    /** The open file behind an fd, as the kernel names it ({@code /memfd:x (deleted)}, {@code anon_inode:[...]}) with its inode. */
    private static String identity(int fd) throws Exception {
        Path link = Path.of("/proc/self/fd/" + fd);
        return Files.readSymbolicLink(link) + " ino " + Files.getAttribute(link, "unix:ino");
    }

    @Test
    void aMemfdSentIsTheSameFileAndItsPagesAreShared() throws Exception {
        try (UnixSocket.Pair p = UnixSocket.pair(); Arena arena = Arena.ofConfined()) {
            int memfd = Memfd.create("scm-test", 0);
            int got = -1;
            try {
                Memfd.ftruncate(memfd, 4096);
                p.first().send(ByteBuffer.wrap("fd!".getBytes(StandardCharsets.US_ASCII)), memfd);
                ByteBuffer in = ByteBuffer.allocate(16);
                UnixSocket.Received r = p.second().receive(in, 4);
                assertEquals(3, r.bytes());
                assertEquals("fd!", new String(in.array(), 0, 3, StandardCharsets.US_ASCII));
                assertEquals(1, r.fds().length);
                got = r.fds()[0];
                assertNotEquals(memfd, got, "a new descriptor number");
                assertEquals(identity(memfd), identity(got), "the same open file");
                // the received fd writes what the sender's fd reads
                MemorySegment page = arena.allocate(4096);
                page.set(java.lang.foreign.ValueLayout.JAVA_LONG, 0, 0x1122334455667788L);
                Posix.pwrite(got, page, 8, 0);
                MemorySegment back = arena.allocate(8);
                Posix.pread(memfd, back, 8, 0);
                assertEquals(0x1122334455667788L, back.get(java.lang.foreign.ValueLayout.JAVA_LONG, 0));
                assertTrue((Files.readString(Path.of("/proc/self/fdinfo/" + got)).contains("flags:\t02")),
                        "received close-on-exec (O_CLOEXEC is octal 02000000 in fdinfo's flags)");
            } finally {
                Posix.close(memfd);
                if (got >= 0) Posix.close(got);
            }
        }
    }

    @Test
    void moreDescriptorsThanRoomIsRefusedAndNoneLeak() throws Exception {
        try (UnixSocket.Pair p = UnixSocket.pair()) {
            int a = Memfd.create("room-test-a", 0), b = Memfd.create("room-test-b", 0);
            try {
                p.first().send(ByteBuffer.wrap(new byte[] {1}), a, b);
                SyscallException e = assertThrows(SyscallException.class, () -> p.second().receive(ByteBuffer.allocate(4), 1));
                assertTrue(e.is(Errno.EMSGSIZE), e.getMessage());
                assertTrue(e.getMessage().contains("MSG_CTRUNC"), e.getMessage());
                // Counted by what each descriptor points at, not by how many there are: the JVM opens
                // files of its own (class loading, the JIT) while a test runs.
                assertEquals(1, descriptorsOf("/memfd:room-test-a"), "the descriptor that did arrive was closed");
                assertEquals(1, descriptorsOf("/memfd:room-test-b"), "the one without room never arrived");
            } finally {
                Posix.close(a);
                Posix.close(b);
            }
        }
    }

    @Test
    void aStreamSplitsDataButDescriptorsComeWithTheirFirstByte() throws Exception {
        try (UnixSocket.Pair p = UnixSocket.pair()) {
            int m = Memfd.create("split", 0);
            try {
                byte[] big = new byte[300_000]; // larger than the socket buffer: several recvmsg
                for (int i = 0; i < big.length; i++) big[i] = (byte) (i * 31);
                CompletableFuture<Void> w = CompletableFuture.runAsync(() -> p.first().send(ByteBuffer.wrap(big), m));
                ByteBuffer in = ByteBuffer.allocate(big.length);
                UnixSocket.Received first = p.second().receive(in, 1);
                assertEquals(1, first.fds().length, "the descriptor came with the first part");
                Posix.close(first.fds()[0]);
                assertTrue(p.second().readFully(in));
                w.get();
                assertArrayEquals(big, in.array());
            } finally {
                Posix.close(m);
            }
        }
    }

    @Test
    void aClosedPeerIsEndOfStreamForTheReaderAndEpipeForTheWriter() {
        UnixSocket.Pair p = UnixSocket.pair();
        p.second().close();
        SyscallException e = assertThrows(SyscallException.class, () -> p.first().send(ByteBuffer.wrap(new byte[] {1})));
        assertTrue(e.is(Errno.EPIPE), e.getMessage());
        p.first().close();
        UnixSocket.Pair q = UnixSocket.pair();
        q.first().close();
        assertTrue(q.second().receive(ByteBuffer.allocate(8), 2).endOfStream());
        assertFalse(q.second().readFully(ByteBuffer.allocate(8)));
        q.second().close();
        assertThrows(IllegalStateException.class, () -> q.second().send(ByteBuffer.wrap(new byte[] {1})), "use after close throws");
    }

    @Test
    void listenAcceptConnectByPathAndAcceptTimesOut() throws Exception {
        String path = dir.resolve("s.sock").toString();
        try (UnixSocket server = UnixSocket.listen(path)) {
            SyscallException none = assertThrows(SyscallException.class, () -> server.accept(Duration.ofMillis(50)));
            assertTrue(none.is(Errno.ETIMEDOUT), none.getMessage());
            try (UnixSocket client = UnixSocket.connect(path); UnixSocket conn = server.accept(Duration.ofSeconds(5))) {
                client.send(ByteBuffer.wrap("hello".getBytes(StandardCharsets.US_ASCII)));
                ByteBuffer in = ByteBuffer.allocate(5);
                assertTrue(conn.readFully(in));
                assertEquals("hello", new String(in.array(), StandardCharsets.US_ASCII));
            }
        }
        SyscallException refused = assertThrows(SyscallException.class, () -> UnixSocket.connect(path));
        assertTrue(refused.is(Errno.ECONNREFUSED), refused.getMessage());
    }

    private static long descriptorsOf(String target) throws java.io.IOException {
        try (var fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.filter(f -> {
                try {
                    return Files.readSymbolicLink(f).toString().startsWith(target);
                } catch (java.io.IOException gone) {
                    return false; // the directory stream's own descriptor, closed by the time it is read
                }
            }).count();
        }
    }
}
