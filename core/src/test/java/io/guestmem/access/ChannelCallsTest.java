package io.guestmem.access;

import static io.guestmem.access.Concurrently.start;
import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.procfs.Pagemap;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.DatagramChannel;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.Pipe;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.ScatteringByteChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * How many channel calls a transfer makes: readFrom/writeTo exactly one (a scattering/gathering one over
 * every part of a range that spans slots), so a blocking receive returns one packet's worth and never merges
 * the next into it; readFullyFrom/writeFullyTo loop. And what a failing channel leaves: the pages it stored
 * into are dirty before its exception propagates, as the kernel's pagemap confirms on fresh memory.
 */
class ChannelCallsTest {
    static final long MiB = 1 << 20;
    static final long P = io.guestmem.sys.Posix.PAGE_SIZE;
    HostRegion a, b;
    GuestMemory gm;

    TestGuest guest;

    @BeforeEach
    void setUp() {
        guest = TestGuest.twoSlots();
        a = guest.a;
        b = guest.b;
        gm = guest.gm;
    }

    @AfterEach
    void tearDown() {
        guest.close();
    }

    static byte[] bytes(int n, int seed) {
        byte[] x = new byte[n];
        for (int i = 0; i < n; i++) x[i] = (byte) (seed + 7 * i);
        return x;
    }

    byte[] guest(long gpa, int len) {
        byte[] x = new byte[len];
        gm.read(gpa, x);
        return x;
    }

    @Test
    void readFromIsOneReadSoTwoPipeWritesArriveAsTwo() throws Exception {
        Pipe pipe = Pipe.open();
        try (Pipe.SinkChannel sink = pipe.sink(); Pipe.SourceChannel source = pipe.source()) {
            byte[] first = bytes(100, 1), second = bytes(200, 2);
            // blocked on an empty pipe with room for 300 bytes: the first write alone must end the call
            Concurrently.Call<Long> r1 = start("rx 1", () -> gm.readFrom(0x1000, source, 300));
            sink.write(ByteBuffer.wrap(first));
            assertEquals(100, r1.get(), "one read call, not a loop until the range is full");
            // the second, into a range across the slot boundary (one scattering read over both slots)
            Concurrently.Call<Long> r2 = start("rx 2", () -> gm.readFrom(MiB - 50, source, 300));
            sink.write(ByteBuffer.wrap(second));
            assertEquals(200, r2.get());
            assertArrayEquals(first, guest(0x1000, 100));
            assertArrayEquals(second, guest(MiB - 50, 200));
            sink.close();
            assertEquals(-1, gm.readFrom(0, source, 10), "end of stream");
        }
    }

    @Test
    void readFromTakesOneDatagramAtATimeEvenWhenBothAreQueued() throws Exception {
        try (DatagramChannel rx = DatagramChannel.open(); DatagramChannel tx = DatagramChannel.open()) {
            rx.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
            tx.connect(rx.getLocalAddress());
            rx.connect(tx.getLocalAddress());
            byte[] p1 = bytes(100, 3), p2 = bytes(200, 4);
            tx.write(ByteBuffer.wrap(p1));
            tx.write(ByteBuffer.wrap(p2));
            // a 1000-byte receive buffer straddling the slots: one readv, one datagram
            assertEquals(100, start("rx 1", () -> gm.readFrom(MiB - 50, rx, 1000)).get());
            assertEquals(200, start("rx 2", () -> gm.readFrom(MiB + 100, rx, 1000)).get());
            assertArrayEquals(p1, guest(MiB - 50, 100));
            assertArrayEquals(p2, guest(MiB + 100, 200));
        }
    }

    @Test
    void readFullyFromLoopsUntilTheRangeIsFullOrTheStreamEnds() throws Exception {
        Pipe pipe = Pipe.open();
        try (Pipe.SinkChannel sink = pipe.sink(); Pipe.SourceChannel source = pipe.source()) {
            byte[] all = bytes(300, 5);
            Concurrently.Call<Long> rx = start("rx", () -> gm.readFullyFrom(MiB - 100, source, 300));
            sink.write(ByteBuffer.wrap(all, 0, 100));
            Thread.sleep(20);
            sink.write(ByteBuffer.wrap(all, 100, 200));
            assertEquals(300, rx.get());
            assertArrayEquals(all, guest(MiB - 100, 300));
            sink.write(ByteBuffer.wrap(all, 0, 10));
            sink.close();
            assertEquals(10, gm.readFullyFrom(0, source, 300), "short only at end of stream");
            assertEquals(-1, gm.readFullyFrom(0, source, 300));
        }
    }

    /** A channel that records its calls, takes or gives at most {@code perCall} bytes per call. */
    static final class RecordingChannel implements ScatteringByteChannel, GatheringByteChannel {
        final List<String> calls = new ArrayList<>();
        final int perCall;
        final ByteArrayOutputStream written = new ByteArrayOutputStream();

        RecordingChannel(int perCall) {
            this.perCall = perCall;
        }

        private long move(ByteBuffer[] bufs, int offset, int length, boolean in) {
            long left = perCall;
            for (int k = offset; k < offset + length && left > 0; k++) {
                int n = (int) Math.min(left, bufs[k].remaining());
                for (int i = 0; i < n; i++) {
                    if (in) bufs[k].put((byte) 0x77);
                    else written.write(bufs[k].get());
                }
                left -= n;
            }
            return perCall - left;
        }

        @Override
        public long read(ByteBuffer[] dsts, int offset, int length) {
            calls.add("readv " + length);
            return move(dsts, offset, length, true);
        }

        @Override
        public long read(ByteBuffer[] dsts) {
            return read(dsts, 0, dsts.length);
        }

        @Override
        public int read(ByteBuffer dst) {
            calls.add("read");
            return (int) move(new ByteBuffer[] {dst}, 0, 1, true);
        }

        @Override
        public long write(ByteBuffer[] srcs, int offset, int length) {
            calls.add("writev " + length);
            return move(srcs, offset, length, false);
        }

        @Override
        public long write(ByteBuffer[] srcs) {
            return write(srcs, 0, srcs.length);
        }

        @Override
        public int write(ByteBuffer src) {
            calls.add("write");
            return (int) move(new ByteBuffer[] {src}, 0, 1, false);
        }

        @Override
        public boolean isOpen() {
            return true;
        }

        @Override
        public void close() {}
    }

    @Test
    void oneScatteringOrGatheringCallOverEveryPartOfARangeAcrossSlots() throws Exception {
        RecordingChannel ch = new RecordingChannel(150);
        assertEquals(150, gm.readFrom(MiB - 100, ch, 200), "what the one call gave");
        assertEquals(List.of("readv 2"), ch.calls);
        assertEquals(0x77, gm.readU8(MiB + 49));
        assertEquals(0, gm.readU8(MiB + 50));

        ch.calls.clear();
        gm.write(MiB - 100, bytes(200, 6));
        assertEquals(150, gm.writeTo(MiB - 100, ch, 200));
        assertEquals(List.of("writev 2"), ch.calls);
        ch.calls.clear();
        ch.written.reset();
        assertEquals(200, gm.writeFullyTo(MiB - 100, ch, 200));
        assertEquals(List.of("writev 2", "writev 1"), ch.calls);
        assertArrayEquals(bytes(200, 6), ch.written.toByteArray());

        ch.calls.clear();
        assertEquals(200, gm.readFullyFrom(MiB - 100, ch, 200));
        assertEquals(List.of("readv 2", "readv 1"), ch.calls);
        ch.calls.clear();
        assertEquals(100, gm.readFrom(0x4000, ch, 100));
        assertEquals(List.of("read"), ch.calls, "a range in one slot: a plain read");

        // a channel that cannot gather: one write of the first part only; writeFullyTo does the rest
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        var plain = Channels.newChannel(out);
        assertEquals(100, gm.writeTo(MiB - 100, plain, 200), "the part in slot 0");
        assertEquals(200, gm.writeFullyTo(MiB - 100, plain, 200));
        assertEquals(300, out.size());
    }

    /** Stores {@code n} bytes of 0x33 (across the buffers it is given) in its first call, then throws. */
    static final class FailingChannel implements ScatteringByteChannel {
        final int n;

        FailingChannel(int n) {
            this.n = n;
        }

        @Override
        public long read(ByteBuffer[] dsts, int offset, int length) throws IOException {
            int left = n;
            for (int k = offset; k < offset + length && left > 0; k++) {
                while (dsts[k].hasRemaining() && left > 0) {
                    dsts[k].put((byte) 0x33);
                    left--;
                }
            }
            throw new IOException("connection reset after " + n + " bytes");
        }

        @Override
        public long read(ByteBuffer[] dsts) throws IOException {
            return read(dsts, 0, dsts.length);
        }

        @Override
        public int read(ByteBuffer dst) throws IOException {
            return (int) read(new ByteBuffer[] {dst}, 0, 1);
        }

        @Override
        public boolean isOpen() {
            return true;
        }

        @Override
        public void close() {}
    }

    TreeSet<Long> pagesOf(long gpa, long len) {
        TreeSet<Long> s = new TreeSet<>();
        for (long g = gpa / P; g <= (gpa + len - 1) / P; g++) s.add(g);
        return s;
    }

    TreeSet<Long> dirtyNow() {
        return DirtyTrackingTest.gfnsOf(gm.pagesToSend(null));
    }

    final TreeSet<Long> presentBefore = new TreeSet<>();

    /** The pages the kernel has made present since the last call (only writes make them: nothing reads first). */
    TreeSet<Long> newlyPresent(Pagemap pm) {
        TreeSet<Long> k = DirtyTrackingTest.presentGfns(pm, a, 0);
        k.addAll(DirtyTrackingTest.presentGfns(pm, b, MiB / P));
        k.removeAll(presentBefore);
        presentBefore.addAll(k);
        return k;
    }

    @Test
    void aReadThatFailsAfter5000BytesHasTheirPagesDirtyBeforeTheExceptionPropagates() throws Exception {
        try (Pagemap pm = Pagemap.openSelf()) {
            // a plain (non-scattering) channel, one slot: 5000 bytes from 1000 bytes before a page boundary
            long gpa = 8 * P - 1000;
            ReadableByteChannel plain = new ReadableByteChannel() {
                final FailingChannel f = new FailingChannel(5000);

                @Override
                public int read(ByteBuffer dst) throws IOException {
                    return f.read(dst);
                }

                @Override
                public boolean isOpen() {
                    return true;
                }

                @Override
                public void close() {}
            };
            IOException e = assertThrows(IOException.class, () -> gm.readFrom(gpa, plain, 64 * 1024));
            assertEquals("connection reset after 5000 bytes", e.getMessage(), "the channel's exception, unchanged");
            TreeSet<Long> expected = pagesOf(gpa, 5000);
            assertEquals(expected, newlyPresent(pm), "the kernel's view: exactly these pages were written");
            assertEquals(expected, dirtyNow());
            assertEquals(0x33, gm.readU8(gpa + 4999));

            // a scattering read across the slot boundary: 2000 bytes into slot 0, 3000 into slot 1
            long across = MiB - 2000;
            assertThrows(IOException.class, () -> gm.readFrom(across, new FailingChannel(5000), 10_000));
            expected = pagesOf(across, 5000);
            assertEquals(expected, newlyPresent(pm));
            assertEquals(expected, dirtyNow());

            // readFullyFrom: what earlier calls stored and what the failing call stored
            ReadableByteChannel twoCalls = new ReadableByteChannel() {
                int call;

                @Override
                public int read(ByteBuffer dst) throws IOException {
                    if (call++ == 0) {
                        dst.put(new byte[3000]);
                        return 3000;
                    }
                    return new FailingChannel(2000).read(dst);
                }

                @Override
                public boolean isOpen() {
                    return true;
                }

                @Override
                public void close() {}
            };
            long gpa2 = MiB + MiB / 2 + 100; // in slot 1
            assertThrows(IOException.class, () -> gm.readFullyFrom(gpa2, twoCalls, 20_000));
            expected = pagesOf(gpa2, 5000);
            assertEquals(expected, newlyPresent(pm));
            assertEquals(expected, dirtyNow());
            assertEquals(0x33, gm.readU8(gpa2 + 4999));
            assertEquals(0, gm.readU8(gpa2 + 5000));
        }
    }
}
