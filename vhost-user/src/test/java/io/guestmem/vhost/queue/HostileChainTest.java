package io.guestmem.vhost.queue;

import static io.guestmem.vhost.queue.HostileGuest.A_SIZE;
import static io.guestmem.vhost.queue.HostileGuest.AVAIL;
import static io.guestmem.vhost.queue.HostileGuest.B;
import static io.guestmem.vhost.queue.HostileGuest.BUF;
import static io.guestmem.vhost.queue.HostileGuest.B_SIZE;
import static io.guestmem.vhost.queue.HostileGuest.DESC;
import static io.guestmem.vhost.queue.HostileGuest.END;
import static io.guestmem.vhost.queue.HostileGuest.F_INDIRECT;
import static io.guestmem.vhost.queue.HostileGuest.F_NEXT;
import static io.guestmem.vhost.queue.HostileGuest.F_WRITE;
import static io.guestmem.vhost.queue.HostileGuest.HOLE;
import static io.guestmem.vhost.queue.HostileGuest.INDIRECT;
import static io.guestmem.vhost.queue.HostileGuest.USED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.sys.Errno;
import io.guestmem.vhost.blk.RawImage;
import io.guestmem.vhost.blk.VirtioBlk;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.io.TempDir;

/**
 * A hostile driver's descriptor chains and rings, each refused as virtio devices do: a malformed chain is
 * a {@link ChainError} and its request an IOERR status at the last device-writable byte the walk reached (no
 * status when it reached none); a ring broken beyond one request (an available index too far ahead, a head
 * past the table, rings misaligned or outside RAM) a {@link VirtqueueException} that stops the queue. After
 * each, every byte of guest memory but the status byte and the used ring is what it was, and the image too.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class HostileChainTest {
    static final int N = 16;
    static final long HDR = BUF, DATA = BUF + 0x1000, STATUS = BUF + 0x3000;

    @TempDir
    Path dir; // per class: each test writes its image afresh
    HostileGuest g;
    RawImage image;
    VirtioBlk blk;
    byte[] imageBefore;

    @BeforeAll
    void guest() {
        g = new HostileGuest(); // one per class: a guest costs a memslot table and two mappings
    }

    @AfterAll
    void closeGuest() {
        g.close();
    }

    @BeforeEach
    void setUp() throws IOException {
        reset(g);
        byte[] disk = new byte[64 * 1024];
        new Random(1).nextBytes(disk);
        Path p = dir.resolve("disk.img");
        Files.write(p, disk);
        imageBefore = disk;
        image = RawImage.open(p.toString());
        blk = new VirtioBlk(image, "hostile-chain", N);
    }

    @AfterEach
    void tearDown() throws IOException {
        image.close();
        assertArrayEquals(imageBefore, Files.readAllBytes(dir.resolve("disk.img")), "no refused request changed the image");
    }

    void header(long gpa, int type, long sector) {
        g.mem.writeU32(gpa, type);
        g.mem.writeU32(gpa + 4, 0);
        g.mem.writeU64(gpa + 8, sector);
    }

    /**
     * Offers {@code head}, pops it, expects {@code error} (null: walked whole), lets virtio-blk answer and
     * returns it: asserts the used entry, IOERR at {@code status} (-1: none written, used length 0), and no
     * other byte of guest memory changed.
     */
    ChainError refused(SplitQueue q, int head, ChainError error, long status) {
        g.offer(N, head);
        byte[][] before = g.snapshot();
        DescriptorChain c = q.pop();
        assertNotNull(c);
        assertEquals(error, c.error(), c.toString());
        int written = blk.process(0, g.mem, c);
        q.push(c.head(), written);
        assertNull(q.pop());
        assertEquals(1, g.usedIdx());
        assertEquals(head, g.usedId(0, N));
        if (status < 0) {
            assertEquals(0, written, "no status byte to be found: nothing written");
        } else {
            assertEquals(1, written, "only the status byte");
            assertEquals(VirtioBlk.S_IOERR, g.mem.readU8(status));
        }
        assertEquals(written, g.usedLength(0, N));
        List<Long> bad = g.changesOutside(before, new long[] {Math.max(status, 0), status < 0 ? 0 : 1}, HostileGuest.usedRing(N));
        assertTrue(bad.isEmpty(), "bytes changed outside the status and the used ring at " + bad);
        return c.error();
    }

    /** The usual read chain's header and status, with the data descriptor (1) left to the test. */
    void readChain(int type) {
        header(HDR, type, 0);
        g.desc(DESC, 0, HDR, 16, F_NEXT, 1);
        g.desc(DESC, 2, STATUS, 1, F_WRITE, 0);
    }

    SplitQueue q() {
        return g.queue(N, true, true);
    }

    // ------------------------------------------------------------------------------- buffers outside RAM

    @Test
    void headerOutsideMemoryInTheHoleOrStraddlingARegionEnd() {
        for (long hdr : new long[] {END + 0x1000, HOLE + 0x100, HOLE - 8, 0x7fff_ffff_ffff_0000L}) {
            g = reset(g);
            SplitQueue q = q();
            g.desc(DESC, 0, hdr, 16, F_NEXT, 1);
            g.desc(DESC, 1, STATUS, 1, F_WRITE, 0);
            refused(q, 0, null, STATUS);
        }
    }

    @Test
    void readIntoBuffersOutsideMemoryWritesNothing() {
        // data past the end of RAM, in the hole, straddling the end of region A, straddling B's end
        for (long data : new long[] {END + 0x1000, HOLE + 0x200, HOLE - 256, END - 512 + 16}) {
            g = reset(g);
            SplitQueue q = q();
            readChain(VirtioBlk.T_IN);
            g.desc(DESC, 1, data, 1024, F_WRITE | F_NEXT, 2);
            refused(q, 0, null, STATUS);
        }
    }

    @Test
    void writeFromBuffersOutsideMemoryLeavesTheImage() {
        for (long data : new long[] {END, HOLE + 0x200, HOLE - 256}) {
            g = reset(g);
            SplitQueue q = q();
            header(HDR, VirtioBlk.T_OUT, 0);
            g.desc(DESC, 0, HDR, 16, F_NEXT, 1);
            g.desc(DESC, 1, data, 1024, F_NEXT, 2);
            g.desc(DESC, 2, STATUS, 1, F_WRITE, 0);
            refused(q, 0, null, STATUS);
        }
    }

    @Test
    void statusOutsideMemoryCompletesWithNothingWritten() {
        SplitQueue q = q();
        header(HDR, VirtioBlk.T_FLUSH, 0);
        g.desc(DESC, 0, HDR, 16, F_NEXT, 1);
        g.desc(DESC, 1, HOLE + 5, 1, F_WRITE, 0);
        g.offer(N, 0);
        byte[][] before = g.snapshot();
        HostileGuest.Served s = HostileGuest.serve(q, blk, g.mem);
        assertEquals(new HostileGuest.Served(1, null), s);
        assertEquals(0, g.usedLength(0, N));
        assertTrue(g.changesOutside(before, HostileGuest.usedRing(N)).isEmpty());
    }

    // ------------------------------------------------------------------------------- lengths

    @Test
    void addressPlusLengthWrapping2To64() {
        SplitQueue q = q();
        readChain(VirtioBlk.T_IN);
        g.desc(DESC, 1, 0xffff_ffff_ffff_f000L, 0x2000, F_WRITE | F_NEXT, 2);
        // the walk stops at the data buffer: no writable byte reached, so no status
        refused(q, 0, ChainError.LENGTH_OVERFLOW, -1);
        // the same with the status first, then the wrapping buffer: IOERR in the status the walk reached
        g = reset(g);
        q = q();
        header(HDR, VirtioBlk.T_IN, 0);
        g.desc(DESC, 0, HDR, 16, F_NEXT, 1);
        g.desc(DESC, 1, STATUS, 1, F_WRITE | F_NEXT, 2);
        g.desc(DESC, 2, -512L, 512 + 1, F_WRITE, 0);
        refused(q, 0, ChainError.LENGTH_OVERFLOW, STATUS);
    }

    @Test
    void lengthsSummingPast32Bits() {
        SplitQueue q = q();
        header(HDR, VirtioBlk.T_IN, 0);
        g.desc(DESC, 0, HDR, 16, F_NEXT, 1);
        g.desc(DESC, 1, STATUS, 1, F_WRITE | F_NEXT, 2);
        g.desc(DESC, 2, B, 0xffff_ffffL, F_WRITE | F_NEXT, 3); // 1 + 2^32 - 1: one byte too many
        g.desc(DESC, 3, STATUS, 1, F_WRITE, 0);
        refused(q, 0, ChainError.LENGTH_OVERFLOW, STATUS);
        // 2^31 + 512 writable bytes: past an int, within a u32; a read that long is past the image (and RAM)
        reset(g);
        q = q();
        header(HDR, VirtioBlk.T_IN, 0);
        g.desc(DESC, 0, HDR, 16, F_NEXT, 1);
        g.desc(DESC, 1, B, 0x8000_0000L, F_WRITE | F_NEXT, 2);
        g.desc(DESC, 2, DATA, 512, F_WRITE | F_NEXT, 3);
        g.desc(DESC, 3, STATUS, 1, F_WRITE, 0);
        refused(q, 0, null, STATUS);
        // readable side: two buffers of 2^31 each
        g = reset(g);
        q = q();
        header(HDR, VirtioBlk.T_OUT, 0);
        g.desc(DESC, 0, HDR, 0x8000_0000L, F_NEXT, 1);
        g.desc(DESC, 1, B, 0x8000_0000L, F_NEXT, 2);
        g.desc(DESC, 2, STATUS, 1, F_WRITE, 0);
        refused(q, 0, ChainError.LENGTH_OVERFLOW, -1);
    }

    @Test
    void readableAfterWritable() {
        SplitQueue q = q();
        header(HDR, VirtioBlk.T_OUT, 0);
        g.desc(DESC, 0, HDR, 16, F_NEXT, 1);
        g.desc(DESC, 1, STATUS, 1, F_WRITE | F_NEXT, 2);
        g.desc(DESC, 2, DATA, 512, 0, 0);
        refused(q, 0, ChainError.READABLE_AFTER_WRITABLE, STATUS);
    }

    // ------------------------------------------------------------------------------- chain shape

    @Test
    void chainsThatLoop() {
        // 0 -> 1 -> 2 -> 1 -> ...: the status is reached, then the walk runs out of the queue's budget
        SplitQueue q = q();
        readChain(VirtioBlk.T_IN);
        g.desc(DESC, 1, DATA, 512, F_WRITE | F_NEXT, 2);
        g.desc(DESC, 2, STATUS, 1, F_WRITE | F_NEXT, 1);
        g.offer(N, 0);
        DescriptorChain c = q.pop();
        assertEquals(ChainError.TOO_LONG, c.error());
        assertTrue(c.buffers() <= N, c.toString());
        // a descriptor whose next is itself; its buffer is read-only, so no status can be found
        g = reset(g);
        q = q();
        header(HDR, VirtioBlk.T_IN, 0);
        g.desc(DESC, 3, HDR, 16, F_NEXT, 3);
        refused(q, 3, ChainError.TOO_LONG, -1);
    }

    @Test
    void loopReachingTheStatusIsRefusedWithIoerrThere() {
        SplitQueue q = q();
        readChain(VirtioBlk.T_IN);
        g.desc(DESC, 1, STATUS, 1, F_WRITE | F_NEXT, 1);
        refused(q, 0, ChainError.TOO_LONG, STATUS);
    }

    @Test
    void nextPastTheTable() {
        for (int next : new int[] {N, N + 1, 0xffff}) {
            g = reset(g);
            SplitQueue q = q();
            header(HDR, VirtioBlk.T_IN, 0);
            g.desc(DESC, 0, HDR, 16, F_NEXT, 1);
            g.desc(DESC, 1, STATUS, 1, F_WRITE | F_NEXT, next);
            refused(q, 0, ChainError.NEXT_OUT_OF_RANGE, STATUS);
        }
    }

    @Test
    void headPastTheTableBreaksTheQueue() {
        SplitQueue q = q();
        g.offer(N, N);
        byte[][] before = g.snapshot();
        VirtqueueException e = assertThrows(VirtqueueException.class, q::pop);
        assertEquals(Errno.EINVAL, e.errnoEnum());
        assertTrue(e.getMessage().contains("head 16"), e.getMessage());
        assertEquals(0, q.lastAvailIdx(), "the entry is not consumed");
        assertNotNull(q.broken());
        assertThrows(VirtqueueException.class, q::pop, "a broken queue stays broken");
        assertTrue(g.changesOutside(before).isEmpty(), "nothing written, not even the used ring");
    }

    @Test
    void availableIndexMoreThanTheQueueSizeAhead() {
        SplitQueue q = q();
        for (int i = 0; i < N; i++) g.desc(DESC, i, HDR, 16, 0, 0); // well-formed (header only) chains
        header(HDR, VirtioBlk.T_FLUSH, 0);
        g.availIdx(N + 1);
        byte[][] before = g.snapshot();
        HostileGuest.Served s = HostileGuest.serve(q, blk, g.mem);
        assertEquals(0, s.requests());
        assertTrue(s.broken().contains("index 17 is 17 entries past 0 in a ring of 16"), s.broken());
        assertEquals(s.broken(), q.broken());
        assertTrue(g.changesOutside(before).isEmpty());
        // exactly the queue size ahead is a full ring, served
        g = reset(g);
        q = q();
        for (int i = 0; i < N; i++) g.desc(DESC, i, HDR, 16, 0, 0);
        q = new SplitQueue(g.mem, g.ring(N), true, true, 0xffff); // and across the index's wrap
        for (int i = 0; i < N; i++) g.mem.writeU16(AVAIL + 4 + 2L * ((0xffff + i) & (N - 1)), i);
        g.availIdx(0xffff + N);
        assertEquals(new HostileGuest.Served(N, null), HostileGuest.serve(q, blk, g.mem));
    }

    // ------------------------------------------------------------------------------- indirect

    void indirectHead(long table, long len, int flags) {
        header(HDR, VirtioBlk.T_IN, 0);
        g.desc(DESC, 0, table, len, F_INDIRECT | flags, 1);
    }

    /** An indirect table at {@code table}: header, then status, well-formed. */
    void indirectTable(long table) {
        header(HDR, VirtioBlk.T_FLUSH, 0);
        g.desc(table, 0, HDR, 16, F_NEXT, 1);
        g.desc(table, 1, STATUS, 1, F_WRITE, 0);
    }

    @Test
    void indirectTableOutsideMemory() {
        for (long table : new long[] {END + 0x1000, HOLE + 0x100, -4096L, -16L}) {
            g = reset(g);
            SplitQueue q = q();
            indirectHead(table, 32, 0);
            refused(q, 0, table == -16L ? ChainError.LENGTH_OVERFLOW : ChainError.DESCRIPTOR_OUTSIDE_MEMORY, -1);
        }
        // straddling the end of region A: the first entry is read, the second is past the region
        g = reset(g);
        SplitQueue q = q();
        indirectHead(HOLE - 16, 32, 0);
        header(HDR, VirtioBlk.T_FLUSH, 0);
        g.desc(HOLE - 16, 0, STATUS, 1, F_WRITE | F_NEXT, 1);
        refused(q, 0, ChainError.DESCRIPTOR_OUTSIDE_MEMORY, STATUS);
    }

    @Test
    void indirectLengths() {
        for (long len : new long[] {0, 8, 40, 16L * N + 16, 0xffff_fff0L}) {
            g = reset(g);
            SplitQueue q = q();
            indirectTable(INDIRECT);
            indirectHead(INDIRECT, len, 0);
            refused(q, 0, ChainError.INDIRECT_BAD_LENGTH, -1);
        }
    }

    @Test
    void indirectInsideIndirectWithNextOrNotNegotiated() {
        SplitQueue q = q();
        indirectTable(INDIRECT + 0x100);
        header(HDR, VirtioBlk.T_FLUSH, 0);
        g.desc(INDIRECT, 0, STATUS, 1, F_WRITE | F_NEXT, 1);
        g.desc(INDIRECT, 1, INDIRECT + 0x100, 32, F_INDIRECT, 0);
        indirectHead(INDIRECT, 32, 0);
        refused(q, 0, ChainError.INDIRECT_NOT_ALLOWED, STATUS);

        g = reset(g);
        q = q();
        indirectTable(INDIRECT);
        indirectHead(INDIRECT, 32, F_NEXT);
        refused(q, 0, ChainError.INDIRECT_WITH_NEXT, -1);

        g = reset(g);
        q = g.queue(N, true, false);
        indirectTable(INDIRECT);
        indirectHead(INDIRECT, 32, 0);
        refused(q, 0, ChainError.INDIRECT_NOT_ALLOWED, -1);
    }

    @Test
    void indirectNextPastItsTableOrLooping() {
        SplitQueue q = q();
        header(HDR, VirtioBlk.T_FLUSH, 0);
        g.desc(INDIRECT, 0, HDR, 16, F_NEXT, 1);
        g.desc(INDIRECT, 1, STATUS, 1, F_WRITE | F_NEXT, 2); // a table of 2: entry 2 is past it
        g.desc(INDIRECT, 2, DATA, 512, F_WRITE, 0);
        indirectHead(INDIRECT, 32, 0);
        refused(q, 0, ChainError.NEXT_OUT_OF_RANGE, STATUS);

        g = reset(g);
        q = q();
        header(HDR, VirtioBlk.T_FLUSH, 0);
        g.desc(INDIRECT, 0, HDR, 16, F_NEXT, 1);
        g.desc(INDIRECT, 1, STATUS, 1, F_WRITE | F_NEXT, 2);
        g.desc(INDIRECT, 2, DATA, 512, 0, 0);
        indirectHead(INDIRECT, 48, 0);
        refused(q, 0, ChainError.READABLE_AFTER_WRITABLE, STATUS);

        g = reset(g);
        q = q();
        header(HDR, VirtioBlk.T_FLUSH, 0);
        g.desc(INDIRECT, 0, HDR, 16, F_NEXT, 1);
        g.desc(INDIRECT, 1, STATUS, 1, F_WRITE | F_NEXT, 1);
        indirectHead(INDIRECT, 32, 0);
        refused(q, 0, ChainError.TOO_LONG, STATUS);
    }

    /** The spec's "zero or more normal chained descriptors followed by a single indirect one", its table full. */
    @Test
    void directDescriptorsThenAFullIndirectTableAreServed() {
        SplitQueue q = q();
        header(HDR, VirtioBlk.T_IN, 0);
        g.desc(DESC, 0, HDR, 8, F_NEXT, 1);
        g.desc(DESC, 1, HDR + 8, 8, F_NEXT, 2);
        g.desc(DESC, 2, INDIRECT, 16L * N, F_INDIRECT, 0);
        for (int i = 0; i < N - 1; i++) g.desc(INDIRECT, i, DATA + 512L * i, 512, F_WRITE | F_NEXT, i + 1);
        g.desc(INDIRECT, N - 1, STATUS, 1, F_WRITE, 0);
        g.offer(N, 0);
        DescriptorChain c = q.pop();
        assertTrue(c.ok(), c.toString());
        assertEquals(N + 2, c.buffers());
        int written = blk.process(0, g.mem, c);
        assertEquals(VirtioBlk.S_OK, g.mem.readU8(STATUS));
        assertEquals(512 * (N - 1) + 1, written);
        byte[] sectors = new byte[512 * (N - 1)];
        g.mem.read(DATA, sectors);
        assertArrayEquals(java.util.Arrays.copyOf(imageBefore, sectors.length), sectors);
    }

    // ------------------------------------------------------------------------------- rings

    @Test
    void ringsMisalignedAreRefused() {
        long[][] rings = {{DESC + 8, AVAIL, USED}, {DESC, AVAIL + 1, USED}, {DESC, AVAIL, USED + 2}};
        for (long[] r : rings) {
            VirtqueueException e = assertThrows(VirtqueueException.class,
                    () -> new SplitQueue(g.mem, new RingLayout(N, r[0], r[1], r[2]), true, true, 0));
            assertEquals(Errno.EINVAL, e.errnoEnum());
            assertTrue(e.getMessage().contains("misaligned"), e.getMessage());
        }
    }

    @Test
    void ringsOutsideMemoryOrPastARegionsEndAreRefused() {
        long usedEnd = HOLE - (4 + 8L * N); // everything but avail_event fits: it would lie at HOLE
        long availEnd = HOLE - (4 + 2L * N); // used_event at HOLE
        long[][] rings = {{END, AVAIL, USED}, {DESC, HOLE + 0x100, USED}, {DESC, AVAIL, HOLE - 8}, {HOLE - 16L * N + 16, AVAIL, USED},
                {DESC, AVAIL, usedEnd}, {DESC, availEnd, USED}, {-4096L, AVAIL, USED}};
        for (long[] r : rings) {
            VirtqueueException e = assertThrows(VirtqueueException.class,
                    () -> new SplitQueue(g.mem, new RingLayout(N, r[0], r[1], r[2]), true, true, 0), () -> java.util.Arrays.toString(r));
            assertEquals(Errno.EFAULT, e.errnoEnum());
            assertTrue(e.getMessage().contains("not in guest RAM"), e.getMessage());
        }
        // the same rings one event field short of the hole, which fit
        new SplitQueue(g.mem, new RingLayout(N, DESC, AVAIL, usedEnd - 4), true, true, 0);
        new SplitQueue(g.mem, new RingLayout(N, DESC, availEnd - 2, USED), true, true, 0);
    }

    // ------------------------------------------------------------------------------- EVENT_IDX

    @Test
    void eventIdxFieldsAreWhereTheSpecSays() {
        SplitQueue q = q();
        for (int i = 0; i < 3; i++) g.desc(DESC, i, HDR, 16, 0, 0);
        long usedEvent = AVAIL + 4 + 2L * N, availEvent = USED + 4 + 8L * N;
        g.mem.writeU16(usedEvent, 1); // interrupt me when used entry 1 is published
        header(HDR, VirtioBlk.T_FLUSH, 0);
        g.offer(N, 0);
        byte[][] before = g.snapshot();
        DescriptorChain c = q.pop();
        q.push(c.head(), blk.process(0, g.mem, c));
        assertFalse(q.rearm());
        assertEquals(1, g.mem.readU16(availEvent), "avail_event: the next entry it wants a kick for");
        assertFalse(q.needsInterrupt(), "used_event 1 not reached by entry 0");
        List<Long> bad = g.changesOutside(before, new long[] {USED + 2, 2}, new long[] {USED + 4, 8}, new long[] {availEvent, 2});
        assertTrue(bad.isEmpty(), "written outside used idx, entry 0 and avail_event: " + bad);
        g.offer(N, 1, 2);
        assertNotNull(c = q.pop());
        q.push(c.head(), 0);
        assertNotNull(c = q.pop());
        q.push(c.head(), 0);
        assertTrue(q.needsInterrupt(), "entry 1 published: (1, 3] holds used_event... (old 1, new 3)");
        assertFalse(q.needsInterrupt(), "nothing new since");
        // without EVENT_IDX the flag decides and the event fields are not touched
        g = reset(g);
        q = g.queue(N, false, true);
        for (int i = 0; i < 3; i++) g.desc(DESC, i, HDR, 16, 0, 0);
        header(HDR, VirtioBlk.T_FLUSH, 0);
        g.mem.writeU16(AVAIL, SplitQueue.AVAIL_F_NO_INTERRUPT);
        g.offer(N, 0);
        before = g.snapshot();
        c = q.pop();
        q.push(c.head(), 0);
        q.rearm();
        assertFalse(q.needsInterrupt());
        assertTrue(g.changesOutside(before, new long[] {USED + 2, 2}, new long[] {USED + 4, 8}).isEmpty(), "avail_event untouched");
        g.mem.writeU16(AVAIL, 0);
        g.offer(N, 1);
        q.push(q.pop().head(), 0);
        assertTrue(q.needsInterrupt());
    }

    /** The same guest, its memory back to the pattern (a new one per case costs a memslot table each). */
    static HostileGuest reset(HostileGuest g) {
        g.fill(0, A_SIZE, 0xa5);
        g.fill(B, B_SIZE, 0xa5);
        return g;
    }
}
