package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.Pipe;
import java.nio.channels.ReadableByteChannel;
import java.util.Arrays;
import java.util.Random;
import java.util.TreeSet;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Tracked slices on real memory. Slot 0 (1 MiB of fresh private anonymous memory) sits at 1 GiB, so that a
 * dirty page is counted from the slot and not from gpa 0, and the slices start off page boundaries. The tests
 * that check tracking only write (a read would fault a page in), so the kernel's pagemap "present" bit is an
 * independent record of the pages written: the slot's dirty log must equal it, and the test's own list.
 * Slot 1 is a READONLY slot at 2 GiB.
 */
class GuestSliceTest {
    static final long MiB = 1 << 20;
    static final long P = io.guestmem.sys.Posix.PAGE_SIZE;
    static final long BASE = 0x4000_0000L, ROM = 0x8000_0000L;

    HostRegion ram, rom;
    GuestMemory gm;

    @BeforeEach
    void setUp() {
        ram = HostRegion.anonymous(Math.max(MiB, 64 * P)).create();
        rom = HostRegion.anonymous(4 * P).create();
        gm = new GuestMemory(new Memslots());
        gm.addRam(0, BASE, ram);
        gm.addRam(1, ROM, rom, 0, 4 * P, Memslot.READONLY);
    }

    @AfterEach
    void tearDown() {
        gm.close();
        ram.close();
        rom.close();
    }

    /** Pages of {@code r} (from its start) that have memory behind them, per the kernel's pagemap. */
    static TreeSet<Long> present(HostRegion r) {
        TreeSet<Long> out = new TreeSet<>();
        try (Pagemap pm = Pagemap.openSelf()) {
            long[] raw = pm.read(r.address(), (int) (r.size() / P));
            for (int i = 0; i < raw.length; i++) if (PagemapEntry.isPresent(raw[i])) out.add((long) i);
        }
        return out;
    }

    /** Pages of slot {@code id} (from its start) in its dirty log, collected and cleared. */
    TreeSet<Long> dirty(int id) {
        DirtyPages d = gm.collectDirty(id);
        TreeSet<Long> out = new TreeSet<>();
        for (long g : d.gfns()) out.add(g - d.baseGfn());
        return out;
    }

    /** Adds the slot-0 pages of {@code len} bytes at {@code gpa} to {@code pages}. */
    static void wrote(TreeSet<Long> pages, long gpa, long len) {
        for (long p = (gpa - BASE) / P; p <= (gpa - BASE + len - 1) / P; p++) pages.add(p);
    }

    @Test
    void everyKindOfWriteThroughASliceOrSubSliceIsInTheDirtyLogAsTheKernelSawIt() throws Exception {
        long start = BASE + 3 * P + 100; // off a page boundary: pages count from the slot, not the slice
        GuestSlice s = gm.slice(start, 40 * P);
        assertEquals(start, s.gpa());
        assertEquals(0, s.slotId());
        assertFalse(s.isReadOnly());
        byte[] model = new byte[(int) ram.size()];
        TreeSet<Long> written = new TreeSet<>();
        Random rnd = new Random(5);
        Pipe pipe = Pipe.open();
        for (int k = 0; k < 300; k++) {
            // every other write goes through a random sub-slice of s, at an offset of its own
            long subOff = (k & 1) == 0 ? 0 : rnd.nextLong(30 * P);
            GuestSlice t = (k & 1) == 0 ? s : s.subSlice(subOff, s.byteSize() - subOff);
            assertEquals(start + subOff, t.gpa());
            long room = t.byteSize();
            long off = 8 + rnd.nextLong(room - 3 * P); // room for alignFor to move down
            long v = rnd.nextLong();
            byte[] data;
            switch (k % 14) {
                case 0 -> { t.writeU8(off, (int) v); data = le(v, 1); }
                case 1 -> { t.writeU16(off, (int) v); data = le(v, 2); }
                case 2 -> { t.writeU32(off, (int) v); data = le(v, 4); }
                case 3 -> { t.writeU64(off, v); data = le(v, 8); } // any alignment: may cross a page
                case 4 -> { off = alignFor(t, off, 8); t.writeU64Volatile(off, v); data = le(v, 8); }
                case 5 -> { off = alignFor(t, off, 4); t.writeU32Release(off, (int) v); data = le(v, 4); }
                case 6 -> { off = alignFor(t, off, 2); t.writeU16Release(off, (int) v); data = le(v, 2); }
                case 7 -> { t.writeU8Release(off, (int) v); data = le(v, 1); }
                case 8 -> { data = random(1 + rnd.nextInt((int) (2 * P)), k); t.write(off, data); }
                case 9 -> { // a direct buffer: its position advances by what was written
                    data = random(1 + rnd.nextInt(300), k);
                    ByteBuffer bb = ByteBuffer.allocateDirect(data.length + 7).put(data).flip();
                    t.write(off, bb);
                    assertEquals(data.length, bb.position());
                }
                case 10 -> { data = random(1 + rnd.nextInt((int) P), k); t.write(off, MemorySegment.ofArray(data)); }
                case 11 -> { data = new byte[1 + rnd.nextInt((int) (2 * P))]; Arrays.fill(data, (byte) v); t.fill(off, data.length, (byte) v); }
                case 12 -> { // a channel read into a sub-slice
                    data = random(1 + rnd.nextInt((int) P), k);
                    pipe.sink().write(ByteBuffer.wrap(data));
                    assertEquals(data.length, t.subSlice(off, data.length).readFrom(pipe.source()));
                }
                default -> { off = alignFor(t, off, 8); t.writeU64Release(off, v); data = le(v, 8); }
            }
            long gpa = t.gpa() + off;
            System.arraycopy(data, 0, model, (int) (gpa - BASE), data.length);
            wrote(written, gpa, data.length);
        }
        assertEquals(written, present(ram), "the kernel's record of the pages written");
        assertEquals(written, dirty(0), "the slot's dirty log");
        assertTrue(dirty(0).isEmpty(), "collected means cleared");
        assertArrayEquals(model, ram.segment().asSlice(0, model.length).toArray(ValueLayout.JAVA_BYTE), "the bytes in host memory");
    }

    /** {@code off} moved down so that the gpa of an access of {@code size} there is aligned. */
    static long alignFor(GuestSlice t, long off, int size) {
        return off - ((t.gpa() + off) & (size - 1));
    }

    static byte[] le(long v, int n) {
        byte[] b = new byte[n];
        for (int k = 0; k < n; k++) b[k] = (byte) (v >>> (8 * k));
        return b;
    }

    static byte[] random(int n, long seed) {
        byte[] x = new byte[n];
        new Random(seed).nextBytes(x);
        return x;
    }

    @Test
    void typedAccessorsAreLittleEndianAndAgreeWithGuestMemoryInEveryFlavour() {
        GuestSlice s = gm.slice(BASE + 0x1000, 0x200);
        s.writeU16(1, 0xbeef);
        s.writeU32(5, 0xcafebabe);
        s.writeU64(9, 0x0102030405060708L);
        MemorySegment host = ram.segment();
        assertEquals((byte) 0xef, host.get(ValueLayout.JAVA_BYTE, 0x1001));
        assertEquals((byte) 0xbe, host.get(ValueLayout.JAVA_BYTE, 0x1002));
        assertEquals((byte) 0xbe, host.get(ValueLayout.JAVA_BYTE, 0x1005));
        assertEquals((byte) 0x08, host.get(ValueLayout.JAVA_BYTE, 0x1009));
        assertEquals(0xbeef, gm.readU16(BASE + 0x1001));
        assertEquals(0xcafebabe, gm.readU32(BASE + 0x1005));
        assertEquals(0x0102030405060708L, s.readU64(9));
        // the ordered flavours at aligned offsets, written one way and read the others
        s.writeU64Volatile(0x40, -2L);
        assertEquals(-2L, gm.readU64Acquire(BASE + 0x1040));
        assertEquals(-2L, s.readU64Acquire(0x40));
        gm.writeU32Release(BASE + 0x1048, 0x80000001);
        assertEquals(0x80000001, s.readU32Volatile(0x48));
        assertEquals(0x80000001, s.readU32Acquire(0x48));
        s.writeU16Volatile(0x4c, 0xfffe);
        assertEquals(0xfffe, s.readU16Acquire(0x4c), "zero-extended");
        assertEquals(0xfffe, s.readU16Volatile(0x4c));
        s.writeU8Volatile(0x4e, 0x1ab);
        assertEquals(0xab, s.readU8Acquire(0x4e));
        assertEquals(0xab, s.readU8Volatile(0x4e));
        s.writeU64Release(0x50, 42);
        assertEquals(42, s.readU64Volatile(0x50));
        s.writeU16Release(0x58, 7);
        s.writeU8Release(0x5a, 8);
        s.writeU32Volatile(0x5c, 9);
        assertEquals(7, gm.readU16(BASE + 0x1058));
        assertEquals(8, gm.readU8(BASE + 0x105a));
        assertEquals(9, gm.readU32(BASE + 0x105c));
        // alignment is the gpa's: a slice starting at an odd gpa has its aligned offsets elsewhere
        GuestSlice odd = s.subSlice(1, 0x100);
        MisalignedAccessException e = assertThrows(MisalignedAccessException.class, () -> odd.readU64Acquire(0x40));
        assertEquals(BASE + 0x1041, e.firstBadGpa());
        assertEquals(0, e.slotId());
        assertEquals(GuestMemoryException.Reason.MISALIGNED, e.reason());
        assertThrows(MisalignedAccessException.class, () -> odd.writeU32Release(0x40, 1));
        assertThrows(MisalignedAccessException.class, () -> odd.writeU16Volatile(0x40, 1));
        assertThrows(MisalignedAccessException.class, () -> odd.readU16Volatile(0x40));
        assertEquals(-2L, odd.readU64Acquire(0x3f), "gpa 0x...1040 is aligned");
        assertEquals(0xbeef, odd.readU16(0), "plain accesses take any alignment");
    }

    @Test
    void aReadOnlySliceRefusesEveryWriteBeforeTouchingAnythingAndStillReads() throws Exception {
        rom.segment().set(ValueLayout.JAVA_LONG_UNALIGNED, 16, 0x1122334455667788L); // ROM loaded through the region
        GuestSlice s = gm.slice(ROM, 4 * P);
        assertTrue(s.isReadOnly());
        assertTrue(s.rawSegment().isReadOnly(), "even the raw segment cannot write");
        assertEquals(0x1122334455667788L, s.readU64(16));
        assertEquals(0x55667788, s.subSlice(16, 8).readU32Acquire(0));
        byte[] before = rom.segment().toArray(ValueLayout.JAVA_BYTE);
        Pipe pipe = Pipe.open();
        pipe.sink().write(ByteBuffer.wrap(new byte[] {1, 2, 3}));
        GuestSlice sub = s.subSlice(P, P);
        for (Executable w : new Executable[] {
                () -> s.writeU8(16, 1), () -> s.writeU16(16, 1), () -> s.writeU32(16, 1), () -> s.writeU64(16, 1),
                () -> s.writeU8Volatile(16, 1), () -> s.writeU16Volatile(16, 1), () -> s.writeU32Volatile(16, 1),
                () -> s.writeU64Volatile(16, 1), () -> s.writeU8Release(16, 1), () -> s.writeU16Release(16, 1),
                () -> s.writeU32Release(16, 1), () -> s.writeU64Release(16, 1), () -> s.write(16, new byte[4]),
                () -> s.write(16, ByteBuffer.allocate(4)), () -> s.write(16, MemorySegment.ofArray(new byte[4])),
                () -> s.fill(16, 4, (byte) 1), () -> s.subSlice(16, 8).writeU64(0, 1)}) {
            ReadOnlySlotException e = assertThrows(ReadOnlySlotException.class, w::run);
            assertEquals(ROM + 16, e.firstBadGpa());
            assertEquals(1, e.slotId());
            assertEquals(0, e.bytesDone());
            assertTrue(e.getMessage().contains("slot 1 is READONLY"), e.getMessage());
        }
        ReadOnlySlotException e = assertThrows(ReadOnlySlotException.class, () -> sub.readFrom(pipe.source()));
        assertEquals(ROM + P, e.firstBadGpa());
        assertThrows(ReadOnlySlotException.class, () -> s.fill((byte) 1));
        ByteBuffer left = ByteBuffer.allocate(3);
        assertEquals(3, pipe.source().read(left), "nothing was taken from the channel");
        assertArrayEquals(before, rom.segment().toArray(ValueLayout.JAVA_BYTE), "ROM untouched");
        assertTrue(dirty(1).isEmpty());
    }

    /** A write action for tables of refusals. */
    interface Executable {
        void run() throws Exception;
    }

    @Test
    void boundsAreCheckedBeforeAnyByteIsTouched() throws Exception {
        GuestSlice s = gm.slice(BASE + 2 * P - 32, 64); // across a page boundary of the slot
        byte[] nine = new byte[9];
        Arrays.fill(nine, (byte) 1);
        ByteBuffer big = ByteBuffer.allocate(65);
        for (Executable w : new Executable[] {
                () -> s.write(56, nine), () -> s.write(-1, new byte[1]), () -> s.write(0, big),
                () -> s.write(60, MemorySegment.ofArray(nine)), () -> s.fill(60, 5, (byte) 1), () -> s.fill(-1, 1, (byte) 1),
                () -> s.writeU64(57, 1), () -> s.writeU32(61, 1), () -> s.writeU16(63, 1), () -> s.writeU8(64, 1),
                () -> s.writeU8(-1, 1), () -> s.writeU64Volatile(64, 1), () -> s.writeU64Release(64, 1),
                () -> s.writeU8Release(64, 1), () -> s.subSlice(60, 8), () -> s.subSlice(-1, 1), () -> s.subSlice(0, 65),
                () -> s.readU8(64), () -> s.readU64(57), () -> s.readU64Acquire(64), () -> s.read(60, new byte[5]),
                () -> s.read(0, MemorySegment.ofArray(new byte[65]))}) {
            assertThrows(IndexOutOfBoundsException.class, w::run);
        }
        assertEquals(0, big.position(), "a refused buffer keeps its position");
        assertEquals(0, s.subSlice(64, 0).byteSize(), "an empty sub-slice at the end");
        assertTrue(present(ram).isEmpty(), "no page was touched");
        assertTrue(dirty(0).isEmpty(), "and none marked");
        // the slice itself must lie in one slot: a GuestMemoryException naming the slot's end
        PartialAccessException p = assertThrows(PartialAccessException.class, () -> gm.slice(BASE + ram.size() - 8, 9));
        assertEquals(BASE + ram.size(), p.firstBadGpa());
        assertEquals(0, p.bytesDone());
        assertThrows(PartialAccessException.class, () -> gm.slice(BASE - 8, 8), "a hole");
        assertThrows(IllegalArgumentException.class, () -> gm.slice(BASE, -1));
    }

    @Test
    void aChannelReadMarksExactlyTheBytesTheChannelDelivered() throws Exception {
        GuestSlice s = gm.slice(BASE + 8 * P, 8 * P);
        // a stream of one and a half pages, then its end
        byte[] data = random((int) (P + P / 2), 9);
        ReadableByteChannel ch = Channels.newChannel(new ByteArrayInputStream(data));
        assertEquals(data.length, s.readFrom(ch));
        assertEquals(-1, s.readFrom(ch), "end of stream before any byte");
        assertEquals(new TreeSet<>(java.util.List.of(8L, 9L)), present(ram), "the kernel: only the pages the bytes went to");
        assertEquals(new TreeSet<>(java.util.List.of(8L, 9L)), dirty(0));
        assertArrayEquals(data, ram.segment().asSlice(8 * P, data.length).toArray(ValueLayout.JAVA_BYTE));

        // a channel that delivers P + 10 bytes and then fails: those bytes are in guest memory, and marked
        ReadableByteChannel failing = new ReadableByteChannel() {
            int calls;

            @Override
            public int read(ByteBuffer dst) throws IOException {
                if (calls++ == 0) {
                    dst.put(new byte[(int) P + 10]);
                    return (int) P + 10;
                }
                throw new IOException("connection reset");
            }

            @Override
            public boolean isOpen() {
                return true;
            }

            @Override
            public void close() {
            }
        };
        assertThrows(IOException.class, () -> s.subSlice(4 * P, 4 * P).readFrom(failing));
        assertEquals(new TreeSet<>(java.util.List.of(12L, 13L)), dirty(0));

        // a non-blocking channel with nothing now: 0 bytes, nothing marked
        Pipe pipe = Pipe.open();
        pipe.source().configureBlocking(false);
        assertEquals(0, s.readFrom(pipe.source()));
        assertTrue(dirty(0).isEmpty());

        // and out: the slice's bytes, unchanged and unmarked (a read of guest memory)
        Pipe out = Pipe.open();
        assertEquals(data.length, s.subSlice(0, data.length).writeTo(out.sink()));
        ByteBuffer got = ByteBuffer.allocate(data.length);
        while (got.hasRemaining()) out.source().read(got);
        assertArrayEquals(data, got.array());
        assertTrue(dirty(0).isEmpty());
        assertEquals(0, gm.slice(BASE, 0).readFrom(Channels.newChannel(new ByteArrayInputStream(data))), "an empty slice reads nothing");
    }

    @Test
    void theRawSegmentIsUntrackedUntilMarkDirty() {
        GuestSlice s = gm.slice(BASE + 5 * P, 2 * P);
        s.rawSegment().set(ValueLayout.JAVA_LONG, P, 77); // a native call's write, say
        assertEquals(77, gm.readU64(BASE + 6 * P), "the same memory");
        assertTrue(dirty(0).isEmpty(), "invisible to the dirty log");
        gm.markDirty(BASE + 6 * P, 8);
        assertEquals(new TreeSet<>(java.util.List.of(6L)), dirty(0));
    }

    @Test
    void aZeroLengthSliceIsEmptyWhereverItIs() {
        for (long gpa : new long[] {BASE, BASE + 3, BASE + ram.size(), 0x10, ROM}) {
            GuestSlice e = gm.slice(gpa, 0);
            assertEquals(0, e.byteSize());
            assertEquals(gpa, e.gpa());
            assertEquals(-1, e.slotId(), "an empty slice belongs to no slot");
            assertFalse(e.isReadOnly());
            e.write(0, new byte[0]);
            e.read(0, new byte[0]);
            e.fill((byte) 1);
            assertEquals(0, e.subSlice(0, 0).byteSize());
            assertThrows(IndexOutOfBoundsException.class, () -> e.readU8(0));
            assertThrows(IndexOutOfBoundsException.class, () -> e.writeU8(0, 1));
            assertThrows(IndexOutOfBoundsException.class, () -> e.subSlice(0, 1));
        }
        assertTrue(present(ram).isEmpty() && dirty(0).isEmpty());
    }

    @Test
    void aSliceMarksTheDirtyLogOfItsOwnSlotOnly() {
        try (HostRegion other = HostRegion.anonymous(4 * P).create()) {
            gm.addRam(2, BASE + 16 * MiB, other, 0, 4 * P, Memslot.LOG_DIRTY_PAGES);
            GuestSlice s = gm.slice(BASE + 16 * MiB + P, 2 * P);
            s.writeU32(P, 1);
            assertEquals(2, s.slotId());
            DirtyPages d = gm.collectDirty(2);
            assertArrayEquals(new long[] {(BASE + 16 * MiB) / P + 2}, d.gfns());
            assertTrue(dirty(0).isEmpty());
            gm.removeRam(2);
        }
    }
}
