package io.guestmem.vhost;

import static io.guestmem.vhost.queue.HostileGuest.AVAIL;
import static io.guestmem.vhost.queue.HostileGuest.BUF;
import static io.guestmem.vhost.queue.HostileGuest.DESC;
import static io.guestmem.vhost.queue.HostileGuest.F_NEXT;
import static io.guestmem.vhost.queue.HostileGuest.F_WRITE;
import static io.guestmem.vhost.queue.HostileGuest.UADDR;
import static io.guestmem.vhost.queue.HostileGuest.USED;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.sys.Eventfd;
import io.guestmem.sys.Poll;
import io.guestmem.sys.UnixSocket;
import io.guestmem.vhost.blk.RawImage;
import io.guestmem.vhost.blk.VirtioBlk;
import io.guestmem.vhost.queue.HostileGuest;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.StandardOpenOption;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The hostile driver through the whole back-end: a session over a unix socket pair, the memory table sent as
 * memfds, a ring set up as QEMU does. A malformed chain costs its request (IOERR) and the next one is served;
 * a ring the driver breaks is stopped with its err eventfd signalled, and the connection goes on answering.
 */
class HostileSessionTest {
    static final int N = 16, V = Message.VERSION;
    static final long HDR = BUF, STATUS = BUF + 0x3000;

    @TempDir
    Path dir;

    static void send(UnixSocket s, Request r, byte[] payload, int... fds) {
        s.send(Wire.message(r.code, V, payload), fds);
    }

    static byte[] le(long... v) {
        ByteBuffer b = ByteBuffer.allocate(8 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (long x : v) b.putLong(x);
        return b.array();
    }

    /** Waits (a generous bound, not a timing assertion: the test must not hang) for {@code e} to be signalled. */
    static void await(Eventfd e, String what) {
        short[] rev = new short[1];
        assertEquals(1, Poll.readable(new int[] {e.fd()}, 1, rev, 60_000), what + " was not signalled");
        e.drain();
    }

    /** What QEMU sends to start ring 0 but the kick: features, the memory table of {@code g}, the ring, call and err. */
    static void setUp(UnixSocket fe, HostileGuest g, Eventfd call, Eventfd err) {
        send(fe, Request.SET_FEATURES, le(Features.VERSION_1 | Features.RING_INDIRECT_DESC));
        ByteBuffer table = ByteBuffer.allocate(8 + 2 * MemoryRegion.BYTES).order(ByteOrder.LITTLE_ENDIAN).putInt(2).putInt(0);
        for (MemoryRegion r : g.regions()) table.putLong(r.gpa()).putLong(r.size()).putLong(r.userAddr()).putLong(r.mmapOffset());
        send(fe, Request.SET_MEM_TABLE, table.array(), g.fd(0), g.fd(1));
        send(fe, Request.SET_VRING_NUM, le((long) N << 32));
        ByteBuffer addr = ByteBuffer.allocate(40).order(ByteOrder.LITTLE_ENDIAN).putInt(0).putInt(0)
                .putLong(UADDR + DESC).putLong(UADDR + USED).putLong(UADDR + AVAIL).putLong(0);
        send(fe, Request.SET_VRING_ADDR, addr.array());
        send(fe, Request.SET_VRING_BASE, le(0));
        send(fe, Request.SET_VRING_CALL, le(0), call.fd());
        send(fe, Request.SET_VRING_ERR, le(0), err.fd());
    }

    @Test
    void aMalformedChainCostsItsRequestABrokenRingItsRingOnly() throws Exception {
        Path img = dir.resolve("disk.img");
        Files.write(img, new byte[64 * 1024]);
        UnixSocket.Pair p = UnixSocket.pair();
        try (p; HostileGuest g = new HostileGuest(); RawImage image = RawImage.open(img.toString());
             Eventfd kick = Eventfd.create("kick"); Eventfd call = Eventfd.create("call"); Eventfd err = Eventfd.create("err")) {
            VhostUserSession session = new VhostUserSession(p.second(), new VirtioBlk(image, "session", N));
            CompletableFuture<String> ended = CompletableFuture.supplyAsync(session::serve);
            UnixSocket fe = p.first();
            g.fill(0, HostileGuest.A_SIZE, 0xa5);
            g.queue(N, false, true); // the ring's indices at 0, as the driver initialises them
            g.mem.writeU16(AVAIL, 0); // and interrupts wanted

            setUp(fe, g, call, err);

            // chain 0 loops (0 -> 1 -> 1 ...) after its status; chain 2 is a flush
            g.mem.writeU32(HDR, VirtioBlk.T_FLUSH);
            g.desc(DESC, 0, HDR, 16, F_NEXT, 1);
            g.desc(DESC, 1, STATUS, 1, F_WRITE | F_NEXT, 1);
            g.desc(DESC, 2, HDR, 16, F_NEXT, 3);
            g.desc(DESC, 3, STATUS + 1, 1, F_WRITE, 0);
            g.offer(N, 0, 2);
            send(fe, Request.SET_VRING_KICK, le(0), kick.fd()); // starts the ring, which serves what is there
            await(call, "the call eventfd");
            assertEquals(2, g.usedIdx());
            assertEquals(VirtioBlk.S_IOERR, g.mem.readU8(STATUS), "the looping chain");
            assertEquals(VirtioBlk.S_OK, g.mem.readU8(STATUS + 1), "the flush after it");

            // now an available index 17 entries ahead: the ring stops, the err eventfd says so
            g.availIdx(2 + N + 1);
            kick.signal();
            await(err, "the err eventfd");
            assertEquals(2, g.usedIdx(), "nothing more was used");

            // the connection still answers
            fe.send(Wire.message(Request.GET_FEATURES.code, V, new byte[0]));
            ByteBuffer reply = ByteBuffer.allocate(20).order(ByteOrder.LITTLE_ENDIAN);
            assertTrue(fe.readFully(reply));
            assertEquals(Request.GET_FEATURES.code, reply.getInt(0));
            assertEquals(session.offeredFeatures(), reply.getLong(12));
            ByteBuffer base = ByteBuffer.allocate(20).order(ByteOrder.LITTLE_ENDIAN);
            send(fe, Request.GET_VRING_BASE, le(0));
            assertTrue(fe.readFully(base));
            assertEquals(2, base.getInt(16), "the ring stopped where the driver broke it");
            fe.close();
            assertEquals("the front-end closed the connection", ended.get(60, TimeUnit.SECONDS));
        }
    }

    /**
     * A front-end that shrinks a region's file under the back-end: the mapping's pages are gone (SIGBUS, which
     * HotSpot turns into an InternalError in the accessing thread); the session ends with the reason instead
     * of its thread dying of it.
     */
    @Test
    void aRegionTruncatedUnderTheBackEndEndsTheSession() throws Exception {
        Path img = dir.resolve("disk.img");
        Files.write(img, new byte[64 * 1024]);
        UnixSocket.Pair p = UnixSocket.pair();
        try (p; HostileGuest g = new HostileGuest(); RawImage image = RawImage.open(img.toString());
             Eventfd kick = Eventfd.create("kick"); Eventfd call = Eventfd.create("call"); Eventfd err = Eventfd.create("err")) {
            VhostUserSession session = new VhostUserSession(p.second(), new VirtioBlk(image, "session", N));
            CompletableFuture<String> ended = CompletableFuture.supplyAsync(session::serve);
            UnixSocket fe = p.first();
            g.queue(N, false, true);
            setUp(fe, g, call, err);
            send(fe, Request.SET_VRING_KICK, le(0), kick.fd());
            fe.send(Wire.message(Request.GET_FEATURES.code, V, new byte[0])); // its reply: all the above was taken
            assertTrue(fe.readFully(ByteBuffer.allocate(20)));
            try (FileChannel a = FileChannel.open(Path.of("/proc/self/fd/" + g.fd(0)), StandardOpenOption.WRITE)) {
                a.truncate(0); // region A, the ring's, is gone; nothing here touches it again
            }
            kick.signal();
            String why = ended.get(60, TimeUnit.SECONDS);
            assertTrue(why.startsWith("closing the connection"), why);
        }
    }
}
