package io.guestmem.vhost.blk;

import static io.guestmem.vhost.blk.BlkRig.SECTORS;
import static io.guestmem.vhost.blk.BlkRig.buf;
import static io.guestmem.vhost.blk.BlkRig.range;
import static io.guestmem.vhost.queue.HostileGuest.BUF;
import static io.guestmem.vhost.queue.HostileGuest.F_WRITE;
import static io.guestmem.vhost.queue.HostileGuest.END;
import static io.guestmem.vhost.queue.HostileGuest.HOLE;
import static io.guestmem.vhost.queue.HostileGuest.ROM;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.io.TempDir;

/**
 * Malformed virtio-blk requests on well-formed chains: each answered IOERR (or UNSUPP for what the device
 * does not serve) in the status byte, the last byte of the device-writable part, or completed with nothing
 * written when there is no such byte; the image file unchanged, guest memory unchanged but for the status
 * and the used ring.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class HostileBlkTest {
    static final long HDR = BUF, DATA = BUF + 0x1000, STATUS = BUF + 0x3000, SEGS = BUF + 0x4000;

    BlkRig r;

    @BeforeAll
    void setUp(@TempDir Path dir) throws IOException {
        r = new BlkRig(dir, true, true); // one per class: a guest costs a memslot table and two mappings
    }

    @AfterEach
    void imageUnchanged() throws IOException {
        assertArrayEquals(r.disk, r.imageNow(), "no refused request changed the image");
    }

    @AfterAll
    void tearDown() {
        r.close();
    }

    /** Asserts that the request got {@code status} at {@code at} (its used length 1) and changed nothing else. */
    void answered(int status, long at, BlkRig.Done d) {
        assertEquals(1, d.usedLength(), "only the status byte was written");
        assertEquals(status, r.g.mem.readU8(at), "the status");
        assertTrue(d.changedElsewhere().isEmpty(), "changed outside the status and the used ring: " + d.changedElsewhere());
    }

    void ioerr(long at, BlkRig.Done d) {
        answered(VirtioBlk.S_IOERR, at, d);
    }

    long[][] status(long at) {
        return new long[][] {range(at, 1)};
    }

    BlkRig.Done rw(int type, long sector, long[] data) {
        r.pattern();
        r.header(HDR, type, sector);
        return r.again(status(STATUS), buf(HDR, 16, 0), data, buf(STATUS, 1, F_WRITE));
    }

    @Test
    void headerShorterThan16Bytes() {
        for (long[][] hdr : new long[][][] {{buf(HDR, 15, 0)}, {buf(HDR, 8, 0), buf(HDR + 8, 7, 0)}, {buf(HDR, 0, 0)}}) {
            r.pattern();
            r.header(HDR, VirtioBlk.T_OUT, 0);
            long[][] chain = java.util.Arrays.copyOf(hdr, hdr.length + 1);
            chain[hdr.length] = buf(STATUS, 1, F_WRITE);
            ioerr(STATUS, r.again(status(STATUS), chain));
        }
    }

    @Test
    void statusNotDeviceWritable() {
        // a write whose status is device-readable: no writable byte anywhere, nothing written, nothing done
        r.pattern();
        r.header(HDR, VirtioBlk.T_OUT, 0);
        BlkRig.Done d = r.again(new long[0][], buf(HDR, 16, 0), buf(DATA, 512, 0), buf(STATUS, 1, 0));
        assertEquals(0, d.usedLength());
        assertTrue(d.changedElsewhere().isEmpty(), d.changedElsewhere().toString());
        // a read whose status is readable after its writable data: a malformed chain, IOERR in the data's last byte
        r.pattern();
        r.header(HDR, VirtioBlk.T_IN, 0);
        ioerr(DATA + 511, r.again(status(DATA + 511), buf(HDR, 16, 0), buf(DATA, 512, F_WRITE), buf(STATUS, 1, 0)));
    }

    @Test
    void statusOfLengthZero() {
        r.pattern();
        r.header(HDR, VirtioBlk.T_OUT, 0);
        BlkRig.Done d = r.again(new long[0][], buf(HDR, 16, 0), buf(DATA, 512, 0), buf(STATUS, 0, F_WRITE));
        assertEquals(0, d.usedLength(), "no status byte: completed with nothing written");
        assertTrue(d.changedElsewhere().isEmpty());
        // a read: the status is the last writable byte (any layout), which leaves 511 data bytes: not whole sectors
        r.pattern();
        r.header(HDR, VirtioBlk.T_IN, 0);
        ioerr(DATA + 511, r.again(status(DATA + 511), buf(HDR, 16, 0), buf(DATA, 512, F_WRITE), buf(STATUS, 0, F_WRITE)));
    }

    @Test
    void sectorsPastTheEndOfTheImageOrOverflowing() {
        long[] sectors = {SECTORS, SECTORS - 1, SECTORS + 1, 1L << 55, (1L << 55) + 1, 1L << 54, -1, Long.MIN_VALUE, Long.MAX_VALUE};
        for (long s : sectors) {
            ioerr(STATUS, rw(VirtioBlk.T_OUT, s, buf(DATA, 1024, 0)));
            ioerr(STATUS, rw(VirtioBlk.T_IN, s, buf(DATA, 1024, F_WRITE)));
        }
        // partial sectors
        ioerr(STATUS, rw(VirtioBlk.T_OUT, 0, buf(DATA, 513, 0)));
        ioerr(STATUS, rw(VirtioBlk.T_IN, 0, buf(DATA, 100, F_WRITE)));
    }

    /** Nothing is done that the driver cannot be told about: a status in the ROM, a hole, past RAM. */
    @Test
    void requestsWhoseStatusCannotBeWrittenAreNotCarriedOut() {
        for (long st : new long[] {ROM + 3, HOLE + 1, END + 7}) {
            r.pattern();
            r.header(HDR, VirtioBlk.T_OUT, 0);
            BlkRig.Done d = r.again(new long[0][], buf(HDR, 16, 0), buf(DATA, 512, 0), buf(st, 1, F_WRITE));
            assertEquals(0, d.usedLength());
            assertTrue(d.changedElsewhere().isEmpty(), d.changedElsewhere().toString());
            r.pattern();
            r.header(HDR, VirtioBlk.T_WRITE_ZEROES, 0);
            r.g.mem.write(SEGS, segment(0, 8, 0));
            d = r.again(new long[0][], buf(HDR, 16, 0), buf(SEGS, 16, 0), buf(st, 1, F_WRITE));
            assertEquals(0, d.usedLength());
            assertTrue(d.changedElsewhere().isEmpty(), d.changedElsewhere().toString());
        }
    }

    @Test
    void readIntoAReadOnlyBuffer() {
        // the data descriptor is device-readable: the driver did not let the device write it
        ioerr(STATUS, rw(VirtioBlk.T_IN, 0, buf(DATA, 512, 0)));
        // device-writable, but in a READONLY slot (a ROM): refused before anything is read into the list
        ioerr(STATUS, rw(VirtioBlk.T_IN, 0, buf(ROM, 512, F_WRITE)));
        byte[] rom = new byte[512];
        r.g.mem.read(ROM, rom);
        for (byte b : rom) assertEquals(0x5a, b & 0xff, "the ROM is unchanged");
    }

    @Test
    void writeFromADeviceWritableBuffer() {
        r.pattern();
        r.header(HDR, VirtioBlk.T_OUT, 0);
        ioerr(STATUS, r.again(status(STATUS), buf(HDR, 16, 0), buf(DATA, 512, F_WRITE), buf(STATUS, 1, F_WRITE)));
    }

    /** A discard or write-zeroes request with one 16-byte segment {@code sector, count, flags}, or raw segment bytes. */
    BlkRig.Done ranges(int type, byte[] segs) {
        r.pattern();
        r.header(HDR, type, 0);
        r.g.mem.write(SEGS, segs);
        return r.again(status(STATUS), buf(HDR, 16, 0), buf(SEGS, segs.length, 0), buf(STATUS, 1, F_WRITE));
    }

    static byte[] segment(long sector, int count, int flags) {
        return ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN).putLong(sector).putInt(count).putInt(flags).array();
    }

    @Test
    void discardAndWriteZeroesOutOfRangeOrWithBadFlags() {
        for (int type : new int[] {VirtioBlk.T_DISCARD, VirtioBlk.T_WRITE_ZEROES}) {
            ioerr(STATUS, ranges(type, segment(SECTORS - 1, 2, 0)));
            ioerr(STATUS, ranges(type, segment(SECTORS, 1, 0)));
            ioerr(STATUS, ranges(type, segment(-1, 1, 0)));
            ioerr(STATUS, ranges(type, segment(1L << 55, 1, 0)));
            ioerr(STATUS, ranges(type, segment(0, VirtioBlk.MAX_RANGE_SECTORS + 1, 0)));
            ioerr(STATUS, ranges(type, segment(0, -1, 0)));
            // two segments (max_discard_seg is 1), half a segment, none
            byte[] two = new byte[32];
            System.arraycopy(segment(0, 1, 0), 0, two, 0, 16);
            System.arraycopy(segment(2, 1, 0), 0, two, 16, 16);
            ioerr(STATUS, ranges(type, two));
            ioerr(STATUS, ranges(type, new byte[8]));
            r.pattern();
            r.header(HDR, type, 0);
            ioerr(STATUS, r.again(status(STATUS), buf(HDR, 16, 0), buf(STATUS, 1, F_WRITE)));
            // flags: bits the device does not know, and UNMAP for a discard
            answered(VirtioBlk.S_UNSUPP, STATUS, ranges(type, segment(0, 1, 2)));
            answered(VirtioBlk.S_UNSUPP, STATUS, ranges(type, segment(0, 1, 0x8000_0000)));
        }
        answered(VirtioBlk.S_UNSUPP, STATUS, ranges(VirtioBlk.T_DISCARD, segment(0, 1, 1)));
    }

    @Test
    void unknownRequestTypes() {
        for (int type : new int[] {2, 3, 5, 7, 9, 10, 12, 14, 99, 0x8000_0000, -1}) {
            r.pattern();
            r.header(HDR, type, 0);
            answered(VirtioBlk.S_UNSUPP, STATUS, r.again(status(STATUS), buf(HDR, 16, 0), buf(DATA, 512, F_WRITE), buf(STATUS, 1, F_WRITE)));
        }
    }

    @Test
    void getIdIntoAShortBuffer() {
        for (long len : new long[] {0, 1, 19}) {
            r.pattern();
            r.header(HDR, VirtioBlk.T_GET_ID, 0);
            ioerr(STATUS, r.again(status(STATUS), buf(HDR, 16, 0), buf(DATA, len, F_WRITE), buf(STATUS, 1, F_WRITE)));
        }
    }
}
