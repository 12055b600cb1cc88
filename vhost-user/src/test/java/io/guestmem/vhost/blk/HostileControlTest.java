package io.guestmem.vhost.blk;

import static io.guestmem.vhost.blk.BlkRig.SERIAL;
import static io.guestmem.vhost.blk.BlkRig.buf;
import static io.guestmem.vhost.blk.BlkRig.range;
import static io.guestmem.vhost.queue.HostileGuest.AVAIL;
import static io.guestmem.vhost.queue.HostileGuest.B;
import static io.guestmem.vhost.queue.HostileGuest.BUF;
import static io.guestmem.vhost.queue.HostileGuest.DESC;
import static io.guestmem.vhost.queue.HostileGuest.F_INDIRECT;
import static io.guestmem.vhost.queue.HostileGuest.F_WRITE;
import static io.guestmem.vhost.queue.HostileGuest.USED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.vhost.queue.DescriptorChain;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.io.TempDir;

/**
 * The control for the hostile tests: the well-formed requests they are mutations of are served, with NEXT
 * chains across both regions, INDIRECT tables and EVENT_IDX, the data landing in the image file (read back
 * with a FileChannel) and in guest memory, and nothing written outside the buffers the chains name.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class HostileControlTest {
    static final int S = VirtioBlk.SECTOR;
    static final long HDR = BUF, STATUS = BUF + 0x3000, SEGS = BUF + 0x4000;

    BlkRig r;
    byte[] expected;

    @BeforeAll
    void setUp(@TempDir Path dir) throws IOException {
        r = new BlkRig(dir, false, true);
    }

    @AfterAll
    void tearDown() {
        r.close();
    }

    @BeforeEach
    void image() throws IOException {
        expected = r.imageNow();
    }

    void ok(BlkRig.Done d, int written, long status) {
        assertEquals(VirtioBlk.S_OK, r.g.mem.readU8(status), "the status");
        assertEquals(written + 1, d.usedLength());
        assertTrue(d.changedElsewhere().isEmpty(), "changed outside the chain's writable buffers: " + d.changedElsewhere());
    }

    byte[] random(int n, int seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    @Test
    void writeAcrossBothRegionsThenReadBackThroughAnIndirectTable() throws IOException {
        byte[] data = random(4 * S, 11);
        r.pattern();
        r.header(HDR, VirtioBlk.T_OUT, 4);
        r.g.mem.write(BUF + 0x1000, data, 0, S);
        r.g.mem.write(B + 0x800, data, S, 2 * S);
        r.g.mem.write(BUF + 0x2000, data, 3 * S, S);
        // the header split across two descriptors (any layout), the data in A, B, A, the status in B
        ok(r.again(new long[][] {range(B + 0x100, 1)}, buf(HDR, 8, 0), buf(HDR + 8, 8, 0), buf(BUF + 0x1000, S, 0),
                buf(B + 0x800, 2 * S, 0), buf(BUF + 0x2000, S, 0), buf(B + 0x100, 1, F_WRITE)), 0, B + 0x100);
        System.arraycopy(data, 0, expected, 4 * S, data.length);
        assertArrayEquals(expected, r.imageNow(), "sectors 4-7 hold the data, the rest is as it was");

        // read sectors 3-8 back through an indirect table in B: 1 sector in A, 4 in B, 1 in A
        r.pattern();
        long table = B + 0x4000;
        r.header(HDR, VirtioBlk.T_IN, 3);
        r.g.chain(table, 0, buf(HDR, 16, 0), buf(BUF + 0x1000, S, F_WRITE), buf(B + 0x8000, 4 * S, F_WRITE),
                buf(BUF + 0x2000, S, F_WRITE), buf(STATUS, 1, F_WRITE));
        BlkRig.Done d = r.again(new long[][] {range(BUF + 0x1000, S), range(B + 0x8000, 4 * S), range(BUF + 0x2000, S), range(STATUS, 1)},
                buf(table, 5 * 16, F_INDIRECT));
        ok(d, 6 * S, STATUS);
        byte[] got = new byte[6 * S];
        r.g.mem.read(BUF + 0x1000, got, 0, S);
        r.g.mem.read(B + 0x8000, got, S, 4 * S);
        r.g.mem.read(BUF + 0x2000, got, 5 * S, S);
        assertArrayEquals(Arrays.copyOfRange(expected, 3 * S, 9 * S), got);
    }

    /** A read or write of no sectors (header and status only) is served, and moves nothing. */
    @Test
    void zeroSectorReadAndWrite() throws IOException {
        for (int type : new int[] {VirtioBlk.T_IN, VirtioBlk.T_OUT}) {
            for (long sector : new long[] {0, BlkRig.SECTORS}) {
                r.pattern();
                r.header(HDR, type, sector);
                ok(r.again(new long[][] {range(STATUS, 1)}, buf(HDR, 16, 0), buf(STATUS, 1, F_WRITE)), 0, STATUS);
            }
        }
        assertArrayEquals(expected, r.imageNow());
    }

    @Test
    void flush() {
        r.pattern();
        r.header(HDR, VirtioBlk.T_FLUSH, 0);
        ok(r.again(new long[][] {range(STATUS, 1)}, buf(HDR, 16, 0), buf(STATUS, 1, F_WRITE)), 0, STATUS);
    }

    BlkRig.Done ranges(int type, long sector, int count, int flags) {
        r.pattern();
        r.header(HDR, type, 0);
        r.g.mem.write(SEGS, ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(sector).putInt(count).putInt(flags).array());
        return r.again(new long[][] {range(STATUS, 1)}, buf(HDR, 16, 0), buf(SEGS, 16, 0), buf(STATUS, 1, F_WRITE));
    }

    @Test
    void discardAndWriteZeroesZeroTheirRangesOnly() throws IOException {
        int[][] cases = {{VirtioBlk.T_DISCARD, 8, 8, 0}, {VirtioBlk.T_WRITE_ZEROES, 24, 3, 0}, {VirtioBlk.T_WRITE_ZEROES, 40, 16, 1}};
        for (int[] c : cases) {
            ok(ranges(c[0], c[1], c[2], c[3]), 0, STATUS);
            Arrays.fill(expected, c[1] * S, (c[1] + c[2]) * S, (byte) 0);
            assertArrayEquals(expected, r.imageNow(), "type " + c[0] + " of sectors " + c[1] + "+" + c[2]);
        }
        assertEquals(BlkRig.SECTORS * S, r.imageNow().length, "the image keeps its size");
    }

    @Test
    void getIdIsTwentyNulPaddedBytes() {
        r.pattern();
        r.header(HDR, VirtioBlk.T_GET_ID, 0);
        long id = BUF + 0x1000;
        ok(r.again(new long[][] {range(id, 20), range(STATUS, 1)}, buf(HDR, 16, 0), buf(id, 32, F_WRITE), buf(STATUS, 1, F_WRITE)), 20, STATUS);
        byte[] got = new byte[32];
        r.g.mem.read(id, got);
        byte[] want = new byte[32];
        Arrays.fill(want, 20, 32, (byte) 0xa5); // past the 20 bytes: the driver's own
        System.arraycopy(SERIAL.getBytes(StandardCharsets.US_ASCII), 0, want, 0, SERIAL.length());
        assertArrayEquals(want, got);
    }

    /** Three requests in one batch with EVENT_IDX: avail_event follows, used_event decides the interrupt. */
    @Test
    void eventIdxBatch() throws IOException {
        r.pattern();
        int n = BlkRig.N;
        for (int i = 0; i < 3; i++) {
            long h = HDR + 0x20L * i, st = STATUS + i, data = B + 0x1000L * (i + 1);
            r.header(h, VirtioBlk.T_IN, i);
            r.g.chain(DESC, 3 * i, buf(h, 16, 0), buf(data, S, F_WRITE), buf(st, 1, F_WRITE));
        }
        r.g.mem.writeU16(AVAIL + 4 + 2L * n, 2); // interrupt when entry 2 is used
        r.g.offer(n, 0, 3, 6);
        for (int i = 0; i < 3; i++) {
            DescriptorChain c = r.q.pop();
            assertTrue(c.ok(), c.toString());
            r.q.push(c.head(), r.blk.process(0, r.g.mem, c));
        }
        assertFalse(r.q.rearm(), "nothing more was made available");
        assertTrue(r.q.needsInterrupt(), "entry 2 was used: used_event reached");
        assertEquals(3, r.g.usedIdx());
        assertEquals(3, r.g.mem.readU16(USED + 4 + 8L * n), "avail_event: the next entry the device wants a kick for");
        for (int i = 0; i < 3; i++) {
            assertEquals(3 * i, r.g.usedId(i, n));
            assertEquals(S + 1, r.g.usedLength(i, n));
            assertEquals(VirtioBlk.S_OK, r.g.mem.readU8(STATUS + i));
            byte[] got = new byte[S];
            r.g.mem.read(B + 0x1000L * (i + 1), got);
            assertArrayEquals(Arrays.copyOfRange(expected, i * S, (i + 1) * S), got);
        }
        assertFalse(r.q.needsInterrupt(), "nothing was pushed since");
    }
}
