package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import java.lang.foreign.ValueLayout;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.Pipe;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Block- and net-device style transfers between channels and guest RAM (two adjacent slots, then a hole). */
class ChannelTest {
    static final long MiB = 1 << 20;
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

    static byte[] random(int n, long seed) {
        byte[] x = new byte[n];
        new Random(seed).nextBytes(x);
        return x;
    }

    byte[] guest(long gpa, int len) {
        byte[] x = new byte[len];
        gm.read(gpa, x);
        return x;
    }

    @Test
    void fileChannelBothWaysAcrossSlotsPositionalAndNot(@TempDir Path dir) throws Exception {
        byte[] disk = random((int) MiB, 1);
        Path img = dir.resolve("disk.img");
        Files.write(img, disk);
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            // a 512 KiB "block read" at file offset 4096 into guest RAM straddling the two slots
            long n = gm.readFrom(MiB - 256 * 1024, ch, 4096, 512 * 1024);
            assertEquals(512 * 1024, n);
            assertEquals(0, ch.position(), "positional: the channel's position is untouched");
            assertArrayEquals(Arrays.copyOfRange(disk, 4096, 4096 + 512 * 1024), guest(MiB - 256 * 1024, 512 * 1024));
            // reading past the end of the file: a short count
            assertEquals(4096, gm.readFrom(0, ch, MiB - 4096, 65536));
            assertEquals(-1, gm.readFrom(0, ch, MiB, 10), "EOF before any byte");
            // a "block write" from guest RAM to the file
            byte[] fresh = random(8192, 2);
            gm.write(MiB - 4096, fresh);
            assertEquals(8192, gm.writeTo(MiB - 4096, ch, 0, 8192));
            ByteBuffer check = ByteBuffer.allocate(8192);
            ch.read(check, 0);
            assertArrayEquals(fresh, check.array());
            // non-positional variants move the channel position
            ch.position(100);
            assertEquals(300, gm.readFrom(64, (java.nio.channels.ReadableByteChannel) ch, 300));
            assertEquals(400, ch.position());
        }
    }

    @Test
    void socketPairNetDeviceStyleWithPartialCounts() throws Exception {
        try (ServerSocketChannel server = ServerSocketChannel.open()) {
            server.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
            try (SocketChannel client = SocketChannel.open(server.getLocalAddress());
                 SocketChannel peer = server.accept()) {
                // guest -> network: transmit 256 KiB that straddle the slots
                byte[] frame = random(256 * 1024, 3);
                gm.write(MiB - 100_000, frame);
                Thread rx = new Thread(() -> {
                    try {
                        ByteBuffer got = ByteBuffer.allocate(frame.length);
                        while (got.hasRemaining()) if (peer.read(got) < 0) break;
                        peer.write(ByteBuffer.wrap(got.array())); // echo it back
                    } catch (Exception e) {
                        throw new RuntimeException(e);
                    }
                });
                rx.start();
                assertEquals(frame.length, gm.writeTo(MiB - 100_000, client, frame.length));
                // network -> guest: receive the echo somewhere else
                long got = 0;
                while (got < frame.length) got += gm.readFrom(4096 + got, client, frame.length - got);
                rx.join();
                assertArrayEquals(frame, guest(4096, frame.length));
                // non-blocking, nothing to read: 0 bytes, not an error
                client.configureBlocking(false);
                assertEquals(0, gm.readFrom(0, client, 100));
                peer.write(ByteBuffer.wrap(new byte[] {1, 2, 3}));
                long n = 0;
                for (int k = 0; k < 1000 && n < 3; k++) {
                    n += gm.readFrom(10 + n, client, 100 - n);
                    Thread.sleep(1);
                }
                assertEquals(3, n, "a partial count: only 3 of 100 bytes were there");
                assertArrayEquals(new byte[] {1, 2, 3}, guest(10, 3));
                peer.shutdownOutput();
                long r;
                do r = gm.readFrom(0, client, 100); while (r == 0);
                assertEquals(-1, r);
            }
        }
    }

    @Test
    void pipeTransferAndAHoleConsumesNothing() throws Exception {
        Pipe pipe = Pipe.open();
        try (Pipe.SinkChannel sink = pipe.sink(); Pipe.SourceChannel source = pipe.source()) {
            sink.write(ByteBuffer.wrap(new byte[] {9, 8, 7, 6}));
            // into a range that runs into the hole at 2 MiB: refused before reading anything
            PartialAccessException e = assertThrows(PartialAccessException.class, () -> gm.readFrom(2 * MiB - 2, source, 4));
            assertEquals(2 * MiB, e.firstBadGpa());
            assertEquals(0, e.bytesDone());
            assertEquals(4, gm.readFrom(2 * MiB - 4, source, 4), "the 4 bytes were still in the pipe");
            assertEquals(0x06070809, b.segment().get(ValueLayout.JAVA_INT_UNALIGNED, MiB - 4));
            assertEquals(4, gm.writeTo(2 * MiB - 4, sink, 4));
            ByteBuffer back = ByteBuffer.allocate(4);
            source.read(back);
            assertArrayEquals(new byte[] {9, 8, 7, 6}, back.array());
        }
    }
}
