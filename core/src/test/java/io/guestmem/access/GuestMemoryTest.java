package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Bulk and typed access over real host memory: three slots, two of them adjacent (0..1M from region A,
 * 1M..2M from region B), a hole 2M..4M, then a read-only slot 4M..5M. Every check reads the bytes back
 * through the regions' own segments, not only through GuestMemory.
 */
class GuestMemoryTest {
    static final long MiB = 1 << 20;
    static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    Memslots slots;
    GuestMemory gm;
    HostRegion a, b, rom;

    TestGuest guest;

    @BeforeEach
    void setUp() {
        guest = TestGuest.twoSlotsAndRom();
        slots = guest.slots;
        gm = guest.gm;
        a = guest.a;
        b = guest.b;
        rom = guest.rom;
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

    @Test
    void writeAndReadCrossTheBoundaryBetweenAdjacentSlots() {
        byte[] data = random((int) MiB, 1);
        long gpa = MiB / 2;
        gm.write(gpa, data);
        // the kernel's memory, through the regions themselves
        byte[] inA = a.segment().asSlice(MiB / 2, MiB / 2).toArray(ValueLayout.JAVA_BYTE);
        byte[] inB = b.segment().asSlice(0, MiB / 2).toArray(ValueLayout.JAVA_BYTE);
        assertArrayEquals(java.util.Arrays.copyOfRange(data, 0, (int) (MiB / 2)), inA);
        assertArrayEquals(java.util.Arrays.copyOfRange(data, (int) (MiB / 2), (int) MiB), inB);
        byte[] back = new byte[(int) MiB];
        gm.read(gpa, back);
        assertArrayEquals(data, back);
    }

    @Test
    void aWriteIntoTheHoleStopsThereNamingTheGpaAndTheBytesDone() {
        // a u64 straddling RAM and the hole: refused as a whole, nothing of it written
        PartialAccessException t = assertThrows(PartialAccessException.class, () -> gm.writeU64(2 * MiB - 4, -1L));
        assertEquals(2 * MiB, t.firstBadGpa());
        assertEquals(0, b.segment().get(ValueLayout.JAVA_INT_UNALIGNED, MiB - 4), "typed writes are all or nothing");
        assertThrows(PartialAccessException.class, () -> gm.readU64(2 * MiB - 4));
        byte[] data = random(8192, 2);
        long gpa = 2 * MiB - 4096;
        PartialAccessException e = assertThrows(PartialAccessException.class, () -> gm.write(gpa, data));
        assertEquals(2 * MiB, e.firstBadGpa());
        assertEquals(4096, e.bytesDone());
        assertEquals(GuestMemoryException.Reason.NOT_RAM, e.reason());
        assertEquals(-1, e.slotId());
        assertTrue(e.getMessage().contains("0x200000"), e.getMessage());
        // the first 4096 bytes did land
        assertArrayEquals(java.util.Arrays.copyOf(data, 4096), b.segment().asSlice(MiB - 4096, 4096).toArray(ValueLayout.JAVA_BYTE));
        // a read starting in the hole does nothing
        PartialAccessException r = assertThrows(PartialAccessException.class, () -> gm.read(3 * MiB, new byte[16]));
        assertEquals(3 * MiB, r.firstBadGpa());
        assertEquals(0, r.bytesDone());
        assertThrows(PartialAccessException.class, () -> gm.readU8(-1L)); // 2^64 - 1: no slot
    }

    @Test
    void byteBufferAndSegmentVariantsAndBufferPositionOnPartialAccess() {
        ByteBuffer src = ByteBuffer.allocateDirect(12288);
        byte[] pattern = random(12288, 3);
        src.put(pattern).flip();
        GuestMemoryException e = assertThrows(GuestMemoryException.class, () -> gm.write(2 * MiB - 8192, src));
        assertEquals(8192, e.bytesDone());
        assertEquals(8192, src.position(), "the position says how much was written");
        ByteBuffer heap = ByteBuffer.allocate(8192);
        gm.read(2 * MiB - 8192, heap);
        assertEquals(8192, heap.position());
        assertArrayEquals(java.util.Arrays.copyOf(pattern, 8192), heap.array());

        MemorySegment seg = MemorySegment.ofArray(new byte[100]);
        gm.write(100, MemorySegment.ofArray(pattern).asSlice(0, 100));
        gm.read(100, seg);
        assertArrayEquals(java.util.Arrays.copyOf(pattern, 100), seg.toArray(ValueLayout.JAVA_BYTE));
    }

    @Test
    void readOnlySlotRefusesWritesNamingTheSlotAndStillReads() {
        rom.segment().set(LE64, 16, 0x1122334455667788L); // the VMM loads ROM through the region itself
        assertEquals(0x1122334455667788L, gm.readU64(4 * MiB + 16));
        ReadOnlySlotException e = assertThrows(ReadOnlySlotException.class, () -> gm.writeU64(4 * MiB + 16, 0));
        assertEquals(2, e.slotId());
        assertEquals(4 * MiB + 16, e.firstBadGpa());
        assertTrue(e.getMessage().contains("slot 2 is READONLY"), e.getMessage());
        assertThrows(ReadOnlySlotException.class, () -> gm.write(4 * MiB, new byte[10]));
        assertThrows(ReadOnlySlotException.class, () -> gm.compareAndSetU32(4 * MiB, 0, 1));
        assertThrows(ReadOnlySlotException.class, () -> gm.getAndAddU64(4 * MiB, 1));
        assertThrows(ReadOnlySlotException.class, () -> gm.writeU32Volatile(4 * MiB, 1));
        assertEquals(0x1122334455667788L, rom.segment().get(LE64, 16));
        assertTrue(gm.slice(4 * MiB, 64).isReadOnly(), "slices of a READONLY slot are read-only");
    }

    @Test
    void typedAccessorsAreLittleEndianAtAnyAlignmentAndAcrossSlots() {
        gm.writeU16(3, 0xbeef);
        gm.writeU32(17, 0xcafebabe);
        gm.writeU64(33, 0x0102030405060708L);
        gm.writeU8(1, 0x1ff);
        MemorySegment s = a.segment();
        assertEquals((byte) 0xef, s.get(ValueLayout.JAVA_BYTE, 3));
        assertEquals((byte) 0xbe, s.get(ValueLayout.JAVA_BYTE, 4));
        assertEquals((byte) 0xbe, s.get(ValueLayout.JAVA_BYTE, 17));
        assertEquals((byte) 0x08, s.get(ValueLayout.JAVA_BYTE, 33));
        assertEquals((byte) 0xff, s.get(ValueLayout.JAVA_BYTE, 1));
        assertEquals(0xbeef, gm.readU16(3));
        assertEquals(0xcafebabe, gm.readU32(17));
        assertEquals(0x0102030405060708L, gm.readU64(33));
        assertEquals(0xff, gm.readU8(1));
        // a u64 straddling slot 0 and slot 1 (two regions, not contiguous in the host)
        gm.writeU64(MiB - 3, 0x8877665544332211L);
        assertEquals(0x8877665544332211L, gm.readU64(MiB - 3));
        assertEquals((byte) 0x11, a.segment().get(ValueLayout.JAVA_BYTE, MiB - 3));
        assertEquals((byte) 0x44, b.segment().get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(0x44332211, gm.readU32(MiB - 3));
    }

    @Test
    void volatileAndAtomicAccessorsNeedNaturalAlignment() {
        MisalignedAccessException m = assertThrows(MisalignedAccessException.class, () -> gm.readU64Volatile(4));
        assertEquals(GuestMemoryException.Reason.MISALIGNED, m.reason());
        assertEquals(4, m.firstBadGpa());
        assertEquals(0, m.bytesDone());
        assertEquals(0, m.slotId());
        assertEquals(8, m.size());
        assertTrue(m.getMessage().contains("readU64Volatile") && m.getMessage().contains("not 8-byte aligned"), m.getMessage());
        assertThrows(MisalignedAccessException.class, () -> gm.writeU32Volatile(2, 0));
        assertThrows(MisalignedAccessException.class, () -> gm.readU16Volatile(1));
        assertThrows(MisalignedAccessException.class, () -> gm.compareAndSetU64(MiB - 4, 0, 1));
        assertThrows(MisalignedAccessException.class, () -> gm.getAndAddU32(6, 1));
        assertEquals(-1, assertThrows(MisalignedAccessException.class, () -> gm.readU32Volatile(3 * MiB + 1)).slotId(),
                "misaligned in a hole: no slot to name");
        assertEquals(0, a.segment().get(ValueLayout.JAVA_INT, 0), "nothing was written");
        gm.writeU64Volatile(MiB - 8, -1L);
        assertEquals(-1L, gm.readU64Volatile(MiB - 8));
        assertEquals(0xffff, gm.readU16Volatile(MiB - 2));
        assertEquals(0xff, gm.readU8Volatile(MiB - 1));
        assertEquals(7, gm.getAndAddU32(64, 3) + 7);
        assertEquals(3, gm.readU32(64));
        assertTrue(gm.compareAndSetU32(64, 3, 9));
        assertFalse(gm.compareAndSetU32(64, 3, 10));
        assertEquals(9, gm.readU32Volatile(64));
        assertEquals(0, gm.getAndAddU64(MiB + 8, -1));
        assertEquals(-1L, b.segment().get(LE64, 8));
        assertThrows(PartialAccessException.class, () -> gm.readU32Volatile(3 * MiB));
    }

    @Test
    void aSlotWithoutARegisteredRegionIsNoHostMemoryNotACrash() {
        try (HostRegion other = HostRegion.anonymous(MiB).create()) {
            // a slot created behind GuestMemory's back, over memory it was never told about
            slots.setMemslot(0, 7, 0, 8 * MiB, MiB, other.address());
            PartialAccessException e = assertThrows(PartialAccessException.class, () -> gm.readU64(8 * MiB));
            assertEquals(GuestMemoryException.Reason.NO_HOST_MEMORY, e.reason());
            assertEquals(7, e.slotId());
            gm.register(other); // now it is backed
            other.segment().set(LE64, 0, 42);
            assertEquals(42, gm.readU64(8 * MiB));
        }
        // the region closed: the slot is unbacked again
        PartialAccessException e = assertThrows(PartialAccessException.class, () -> gm.readU64(8 * MiB));
        assertEquals(GuestMemoryException.Reason.NO_HOST_MEMORY, e.reason());
    }

    @Test
    void fillWritesAndStopsAtTheHole() {
        gm.fill(MiB - 10, 20, (byte) 0x5a);
        assertEquals((byte) 0x5a, a.segment().get(ValueLayout.JAVA_BYTE, MiB - 1));
        assertEquals((byte) 0x5a, b.segment().get(ValueLayout.JAVA_BYTE, 9));
        assertEquals(0, b.segment().get(ValueLayout.JAVA_BYTE, 10));
        GuestMemoryException e = assertThrows(GuestMemoryException.class, () -> gm.fill(2 * MiB - 1, 2, (byte) 1));
        assertEquals(1, e.bytesDone());
    }
}
