package io.guestmem.vhost;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.guestmem.sys.Errno;
import io.guestmem.sys.Posix;
import io.guestmem.sys.UnixSocket;
import java.nio.ByteBuffer;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The framing refuses what breaks it, each with its errno, and closes every descriptor that came with a
 * refused message; a fuzz run of random and near-valid messages ends in a message or a refusal, nothing else.
 */
class MessageChannelTest {
    private static final int V = Message.VERSION;

    /** Sends {@code msg} with {@code fds} (closed here after sending), then closes the front-end's end if asked. */
    private static Message roundTrip(ByteBuffer msg, boolean closeAfter, int... fds) {
        UnixSocket.Pair p = UnixSocket.pair();
        try (p; MessageChannel ch = new MessageChannel(p.second())) {
            if (msg.hasRemaining()) p.first().send(msg, fds);
            if (closeAfter) p.first().close();
            return ch.read();
        } finally {
            for (int fd : fds) Posix.close(fd);
        }
    }

    private static VhostUserException refused(Errno errno, ByteBuffer msg, int... fds) {
        VhostUserException e = assertThrows(VhostUserException.class, () -> roundTrip(msg, true, fds));
        assertEquals(errno, e.errno(), e.getMessage());
        return e;
    }

    @Test
    void aWellFormedMessageComesWithItsFds() throws Exception {
        int fd = Wire.memfd("frame-ok", 4096);
        Message m = roundTrip(Wire.message(Request.ADD_MEM_REG.code, V | Message.NEED_REPLY, Wire.le(0L, 0L, 4096L, 0x7000_0000L, 0L)), false, fd);
        try {
            assertEquals(Request.ADD_MEM_REG, m.request());
            assertTrue(m.needsReply());
            assertEquals(1, m.fds().length);
            assertEquals(4096L, m.u64(16));
            assertEquals(1, Wire.openMemfds("frame-ok"), "the received copy is open, the sent one closed");
        } finally {
            m.closeFds();
        }
        assertEquals(0, Wire.openMemfds("frame-ok"));
        assertNull(roundTrip(ByteBuffer.allocate(0), true), "a clean end of stream between messages");
    }

    @Test
    void truncatedHeaderAndPayload() {
        ByteBuffer h = Wire.message(Request.GET_FEATURES.code, V, new byte[0]).limit(5);
        assertTrue(refused(Errno.EPROTO, h).getMessage().contains("5 of 12 bytes"));
        ByteBuffer p = Wire.message(Request.SET_FEATURES.code, V, 8, new byte[3]);
        assertTrue(refused(Errno.EPROTO, p).getMessage().contains("3 of 8 payload bytes"));
    }

    @Test
    void oversizedIsRefusedOnItsHeader() throws Exception {
        int fd = Wire.memfd("frame-big", 4096);
        // claims 1 MiB but sends nothing more: refused without waiting for it
        VhostUserException e = assertThrows(VhostUserException.class,
                () -> roundTrip(Wire.message(Request.SET_MEM_TABLE.code, V, 1 << 20, new byte[0]), false, fd));
        assertEquals(Errno.EMSGSIZE, e.errno());
        assertEquals(0, Wire.openMemfds("frame-big"), "the fd that came with it is closed");
        assertEquals(Errno.EMSGSIZE, refused(Errno.EMSGSIZE, Wire.message(1, V, -1, new byte[0])).errno());
    }

    @Test
    void unknownRequestWrongVersionWrongSize() {
        assertTrue(refused(Errno.ENOSYS, Wire.message(99, V, new byte[0])).getMessage().contains("request 99"));
        assertTrue(refused(Errno.ENOSYS, Wire.message(7, V, Wire.u64(0))).getMessage().contains("request 7"),
                "SET_LOG_FD: not served");
        assertEquals(Errno.EPROTO, refused(Errno.EPROTO, Wire.message(1, 0x2, new byte[0])).errno());
        assertTrue(refused(Errno.EBADMSG, Wire.message(Request.SET_FEATURES.code, V, new byte[4])).getMessage().contains("4 bytes"));
    }

    @Test
    void missingExtraAndTooManyFdsAreRefusedAndClosed() throws Exception {
        // ADD_MEM_REG without its fd
        refused(Errno.EBADMSG, Wire.message(Request.ADD_MEM_REG.code, V, new byte[40]));
        // a kick with NOFD clear but no fd, and one with NOFD set and an fd
        refused(Errno.EBADMSG, Wire.message(Request.SET_VRING_KICK.code, V, Wire.u64(0)));
        refused(Errno.EBADMSG, Wire.message(Request.SET_VRING_KICK.code, V, Wire.u64(0x100)), Wire.memfd("frame-fd", 4096));
        // GET_FEATURES with two fds
        refused(Errno.EBADMSG, Wire.message(Request.GET_FEATURES.code, V, new byte[0]), Wire.memfd("frame-fd", 1), Wire.memfd("frame-fd", 1));
        // a table of two regions with one fd
        byte[] table = new byte[8 + 2 * 32];
        table[0] = 2;
        refused(Errno.EBADMSG, Wire.message(Request.SET_MEM_TABLE.code, V, table), Wire.memfd("frame-fd", 1));
        // nine fds: more than any message carries
        int[] nine = new int[9];
        for (int i = 0; i < 9; i++) nine[i] = Wire.memfd("frame-fd", 1);
        refused(Errno.EBADMSG, Wire.message(Request.GET_FEATURES.code, V, new byte[0]), nine);
        assertEquals(0, Wire.openMemfds("frame-fd"), "no refused message left a descriptor open");
    }

    /** Random messages and mutations of valid ones: each is a message or a VhostUserException; no fd stays open. */
    @Test
    void fuzzTheParser() throws Exception {
        Random rnd = new Random(23);
        int cases = 3000, accepted = 0;
        for (int i = 0; i < cases; i++) {
            Request r = Request.values()[rnd.nextInt(Request.values().length)];
            int code = rnd.nextInt(8) == 0 ? rnd.nextInt(64) : r.code;
            int size = rnd.nextInt(4) == 0 ? rnd.nextInt(400) : r.minPayload + rnd.nextInt(r.maxPayload - r.minPayload + 1);
            byte[] payload = new byte[rnd.nextInt(6) == 0 ? rnd.nextInt(size + 1) : size];
            rnd.nextBytes(payload);
            if (code == Request.SET_MEM_TABLE.code && payload.length >= 4 && rnd.nextBoolean()) payload[0] = (byte) rnd.nextInt(10);
            if (payload.length >= 4 && rnd.nextBoolean()) { payload[1] = payload[2] = payload[3] = 0; }
            int flags = rnd.nextInt(10) == 0 ? rnd.nextInt() : V | (rnd.nextBoolean() ? Message.NEED_REPLY : 0);
            int[] fds = new int[rnd.nextInt(4) == 0 ? rnd.nextInt(11) : rnd.nextInt(2)];
            for (int k = 0; k < fds.length; k++) fds[k] = Wire.memfd("fuzz-frame", 4096);
            ByteBuffer msg = Wire.message(code, flags, size, payload);
            if (msg.remaining() == 0 && fds.length > 0) msg = Wire.message(code, flags, size, new byte[1]);
            try {
                Message m = roundTrip(msg, true, fds);
                if (m != null) {
                    accepted++;
                    m.closeFds();
                }
            } catch (VhostUserException e) {
                assertTrue(e.getMessage().startsWith(e.errno() + " from vhost-user "), e.getMessage());
            } catch (RuntimeException e) {
                fail("case " + i + ": " + e, e);
            }
        }
        assertEquals(0, Wire.openMemfds("fuzz-frame"), "every descriptor of " + cases + " cases was closed");
        assertTrue(accepted > cases / 10 && accepted < cases, accepted + " of " + cases + " accepted: the mutations reach both sides");
        System.out.println("MessageChannelTest.fuzzTheParser: " + cases + " cases, " + accepted + " accepted, " + (cases - accepted) + " refused");
    }

    @Test
    void aReplyIsTheRequestWithTheReplyFlag() {
        try (UnixSocket.Pair p = UnixSocket.pair(); MessageChannel ch = new MessageChannel(p.second())) {
            ch.replyU64(Request.GET_FEATURES, 0x1_4000_0000L);
            ByteBuffer in = ByteBuffer.allocate(20).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            assertTrue(p.first().readFully(in));
            assertArrayEquals(Wire.message(1, V | Message.REPLY, Wire.u64(0x1_4000_0000L)).array(), in.array());
        }
    }
}
