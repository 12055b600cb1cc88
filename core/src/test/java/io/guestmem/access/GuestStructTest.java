package io.guestmem.access;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;
import static java.lang.foreign.MemoryLayout.PathElement.sequenceElement;
import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.virtio.VirtqDescriptor;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SequenceLayout;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Structures through FFM layouts on real memory: a virtio descriptor table written and read back field by
 * field (the bytes checked in host memory against the virtio 1.x layout), the one-slot rule, the
 * little-endian rule, dirty tracking and read-only slots. Slot 0 at 0 and slot 1 right after it (two host
 * regions: a structure may not straddle them), a READONLY slot 2 at 4 MiB.
 */
class GuestStructTest {
    static final long MiB = 1 << 20;
    static final long P = io.guestmem.sys.Posix.PAGE_SIZE;
    static final ValueLayout.OfLong LE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt LE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort LE16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    HostRegion a, b, rom;
    GuestMemory gm;

    TestGuest guest;

    @BeforeEach
    void setUp() {
        guest = TestGuest.twoSlotsAndRom();
        a = guest.a;
        b = guest.b;
        rom = guest.rom;
        gm = guest.gm;
    }

    @AfterEach
    void tearDown() {
        guest.close();
    }

    @Test
    void theDescriptorLayoutIsVirtqDesc() {
        assertEquals(16, VirtqDescriptor.LAYOUT.byteSize());
        assertEquals(VirtqDescriptor.SIZE, VirtqDescriptor.LAYOUT.byteSize());
        assertEquals(0, VirtqDescriptor.ADDR.offset());
        assertEquals(8, VirtqDescriptor.LEN.offset());
        assertEquals(12, VirtqDescriptor.FLAGS.offset());
        assertEquals(14, VirtqDescriptor.NEXT.offset());
        assertEquals(8, VirtqDescriptor.ADDR.size());
        assertEquals(4, VirtqDescriptor.LEN.size());
        assertEquals(2, VirtqDescriptor.FLAGS.size());
        assertEquals(2, VirtqDescriptor.NEXT.size());
        assertThrows(IllegalArgumentException.class, () -> new VirtqDescriptor(0, 0, 0x10000, 0));
        assertThrows(IllegalArgumentException.class, () -> new VirtqDescriptor(0, 0, 0, -1));
    }

    @Test
    void aDescriptorTableWrittenAndReadBackFieldByField() {
        long table = P - 64; // 16-byte aligned, and its descriptors run across a page boundary
        int n = 16;
        // even descriptors as records (writeStruct of a copy made with the layout's var handles), odd ones
        // field by field through a live view
        for (int i = 0; i < n; i++) {
            long addr = 0x1_0000_0000L + 0x1000L * i, len = 0x8000_0000L + i;
            int flags = (i < n - 1 ? VirtqDescriptor.F_NEXT : 0) | (i % 3 == 0 ? VirtqDescriptor.F_WRITE : 0);
            int next = i + 1 < n ? i + 1 : 0;
            long gpa = VirtqDescriptor.gpaOf(table, i);
            if (i % 2 == 0) {
                new VirtqDescriptor(addr, (int) len, flags, next).write(gm, gpa);
            } else {
                GuestStruct d = gm.struct(gpa, VirtqDescriptor.LAYOUT);
                d.set(VirtqDescriptor.ADDR, addr);
                d.set(VirtqDescriptor.LEN, len);
                d.set(VirtqDescriptor.FLAGS, flags);
                d.set(VirtqDescriptor.NEXT, next);
            }
        }
        // the bytes in host memory, where virtio 1.x puts them: le64 addr, le32 len, le16 flags, le16 next
        for (int i = 0; i < n; i++) {
            long o = table + 16L * i;
            assertEquals(0x1_0000_0000L + 0x1000L * i, a.segment().get(LE64, o), "addr of " + i);
            assertEquals((int) (0x8000_0000L + i), a.segment().get(LE32, o + 8), "len of " + i);
            assertEquals(i < n - 1 ? 1 : 0, a.segment().get(LE16, o + 12) & 1, "F_NEXT of " + i);
            assertEquals(i + 1 < n ? i + 1 : 0, a.segment().get(LE16, o + 14), "next of " + i);
        }
        // read back: as records (readStruct + var handles), and field by field through views, the other way round
        int i = 0, walked = 0;
        while (true) {
            long gpa = VirtqDescriptor.gpaOf(table, i);
            VirtqDescriptor d = VirtqDescriptor.read(gm, gpa);
            GuestStruct v = gm.struct(gpa, VirtqDescriptor.LAYOUT);
            assertEquals(0x1_0000_0000L + 0x1000L * i, d.addr());
            assertEquals(d.addr(), v.get(VirtqDescriptor.ADDR));
            assertEquals(0x8000_0000L + i, Integer.toUnsignedLong(d.len()));
            assertEquals(0x8000_0000L + i, v.get(VirtqDescriptor.LEN), "u32 zero-extended");
            assertEquals(d.flags(), v.get(VirtqDescriptor.FLAGS));
            assertEquals(d.next(), v.get(VirtqDescriptor.NEXT));
            assertEquals(i % 3 == 0, d.deviceWritable());
            assertFalse(d.indirect());
            walked++;
            if (!d.hasNext()) break;
            i = d.next();
        }
        assertEquals(n, walked, "the chain ran through every descriptor");
        assertEquals(gpaPages(table, 16L * n), gm.collectDirty(0).count(), "the table's pages, dirty");
        // the table itself as one structure: a sequence layout, fields addressed by index
        SequenceLayout whole = MemoryLayout.sequenceLayout(n, VirtqDescriptor.LAYOUT);
        GuestStruct t = gm.struct(table, whole);
        GuestStruct.Field len5 = GuestStruct.field(whole, sequenceElement(5), groupElement("len"));
        assertEquals(5 * 16 + 8, len5.offset());
        assertEquals(0x8000_0005L, t.get(len5));
        t.set(len5, 99);
        assertEquals(99, VirtqDescriptor.read(gm, VirtqDescriptor.gpaOf(table, 5)).len());
    }

    static long gpaPages(long gpa, long len) {
        return (gpa + len - 1) / P - gpa / P + 1;
    }

    @Test
    void aCopyIsACopyAndTheLayoutsVarHandlesReadIt() {
        VirtqDescriptor d = new VirtqDescriptor(0xabcdef, 512, VirtqDescriptor.F_WRITE, 0);
        d.write(gm, 0x2000);
        MemorySegment copy = gm.readStruct(0x2000, VirtqDescriptor.LAYOUT);
        VarHandle addr = VirtqDescriptor.LAYOUT.varHandle(groupElement("addr"));
        VarHandle flags = VirtqDescriptor.LAYOUT.varHandle(groupElement("flags"));
        assertEquals(0xabcdefL, (long) addr.get(copy, 0L));
        assertEquals((short) VirtqDescriptor.F_WRITE, (short) flags.get(copy, 0L));
        gm.writeU64(0x2000, 1);
        assertEquals(0xabcdefL, (long) addr.get(copy, 0L), "a copy does not follow guest memory");
        assertEquals(d, VirtqDescriptor.of(copy));
        // a layout aligned beyond 8 bytes gets a copy aligned to it
        StructLayout wide = MemoryLayout.structLayout(ValueLayout.JAVA_LONG.withName("lo"), ValueLayout.JAVA_LONG.withName("hi"))
                .withByteAlignment(16);
        MemorySegment w = gm.readStruct(0x2000, wide);
        assertEquals(0, w.address() % 16);
        assertEquals(1L, (long) wide.varHandle(groupElement("lo")).get(w, 0L));
        assertEquals(512L | ((long) VirtqDescriptor.F_WRITE << 32), (long) wide.varHandle(groupElement("hi")).get(w, 0L));
    }

    @Test
    void aStructureMustLieInOneSlotAndNothingIsTouchedOtherwise() {
        long end = MiB; // slot 0 ends here, slot 1 starts here: plain bulk access crosses, a structure may not
        byte[] before = a.segment().asSlice(MiB - 16, 16).toArray(ValueLayout.JAVA_BYTE);
        VirtqDescriptor d = new VirtqDescriptor(1, 2, 0, 0);
        for (Runnable r : new Runnable[] {
                () -> d.write(gm, end - 8), () -> VirtqDescriptor.read(gm, end - 8),
                () -> gm.struct(end - 8, VirtqDescriptor.LAYOUT),
                () -> gm.writeStruct(end - 8, VirtqDescriptor.LAYOUT, MemorySegment.ofArray(new long[2]))}) {
            PartialAccessException e = assertThrows(PartialAccessException.class, r::run);
            assertEquals(end, e.firstBadGpa(), "names the slot's end");
            assertEquals(0, e.bytesDone());
            assertEquals(0, e.slotId());
        }
        assertArrayEquals(before, a.segment().asSlice(MiB - 16, 16).toArray(ValueLayout.JAVA_BYTE));
        assertEquals(0, b.segment().get(ValueLayout.JAVA_LONG, 0));
        assertEquals(0, gm.collectDirty(0).count() + gm.collectDirty(1).count(), "nothing marked");
        PartialAccessException hole = assertThrows(PartialAccessException.class, () -> VirtqDescriptor.read(gm, 3 * MiB));
        assertEquals(3 * MiB, hole.firstBadGpa());
        // the last structure that fits, and the first of the next slot
        d.write(gm, end - 16);
        d.write(gm, end);
        assertEquals(d, VirtqDescriptor.read(gm, end - 16));
        assertEquals(d, VirtqDescriptor.read(gm, end));
        // a view checks its bounds too: a field of another layout is refused
        GuestStruct v = gm.struct(0x100, VirtqDescriptor.LAYOUT);
        StructLayout other = MemoryLayout.structLayout(ValueLayout.JAVA_LONG.withName("addr"), ValueLayout.JAVA_LONG.withName("x"));
        assertThrows(IllegalArgumentException.class, () -> v.get(GuestStruct.field(other, "x")));
        assertThrows(IllegalArgumentException.class, () -> new GuestStruct.Field(VirtqDescriptor.LAYOUT, "bad", 12, 8));
    }

    @Test
    void onlyLittleEndianIntegerLayoutsAreAccepted() {
        StructLayout bigEndian = MemoryLayout.structLayout(ValueLayout.JAVA_INT.withOrder(ByteOrder.BIG_ENDIAN).withName("magic"),
                ValueLayout.JAVA_INT.withName("size"));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> gm.readStruct(0, bigEndian));
        assertTrue(e.getMessage().contains("magic") && e.getMessage().contains("big-endian"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> gm.struct(0, bigEndian));
        assertThrows(IllegalArgumentException.class, () -> gm.writeStruct(0, bigEndian, MemorySegment.ofArray(new byte[8])));
        assertThrows(IllegalArgumentException.class, () -> GuestStruct.field(bigEndian, "size"));
        // nested too
        StructLayout nested = MemoryLayout.structLayout(ValueLayout.JAVA_INT.withName("a"),
                MemoryLayout.sequenceLayout(2, ValueLayout.JAVA_SHORT.withOrder(ByteOrder.BIG_ENDIAN)).withName("pair"));
        assertThrows(IllegalArgumentException.class, () -> gm.readStruct(0, nested));
        // a single byte has no order; a host pointer has no meaning in guest memory; an empty layout is nothing
        StructLayout bytes = MemoryLayout.structLayout(ValueLayout.JAVA_BYTE.withOrder(ByteOrder.BIG_ENDIAN).withName("b"),
                MemoryLayout.paddingLayout(3), ValueLayout.JAVA_FLOAT.withName("f"));
        gm.writeU8(0x40, 0x9c);
        assertEquals(0x9c, gm.struct(0x40, bytes).get(GuestStruct.field(bytes, "b")), "u8 zero-extended");
        assertThrows(IllegalArgumentException.class, () -> GuestStruct.field(bytes, "f"), "not an integer field");
        assertThrows(IllegalArgumentException.class, () -> gm.readStruct(0, MemoryLayout.structLayout(ValueLayout.ADDRESS)));
        assertThrows(IllegalArgumentException.class, () -> gm.readStruct(0, MemoryLayout.structLayout()));
        assertThrows(IllegalArgumentException.class, () -> gm.writeStruct(0, VirtqDescriptor.LAYOUT, MemorySegment.ofArray(new byte[15])),
                "a value of the wrong size");
        // nested structures by path of names
        StructLayout outer = MemoryLayout.structLayout(ValueLayout.JAVA_INT.withName("id"),
                MemoryLayout.structLayout(ValueLayout.JAVA_SHORT.withName("lo"), ValueLayout.JAVA_SHORT.withName("hi")).withName("inner"));
        GuestStruct.Field hi = GuestStruct.field(outer, "inner", "hi");
        assertEquals(6, hi.offset());
        assertEquals("inner.hi", hi.name());
        gm.struct(0x80, outer).set(hi, 0xfffff);
        assertEquals(0xffff, gm.readU16(0x86), "the field's size: u16");
        assertEquals(0, gm.readU16(0x88));
    }

    @Test
    void aReadOnlySlotServesReadsAndRefusesWrites() {
        rom.segment().set(LE64, 32, 0x4000L);
        rom.segment().set(LE32, 40, 64);
        VirtqDescriptor d = VirtqDescriptor.read(gm, 4 * MiB + 32);
        assertEquals(0x4000L, d.addr());
        assertEquals(64, d.len());
        GuestStruct v = gm.struct(4 * MiB + 32, VirtqDescriptor.LAYOUT);
        assertTrue(v.slice().isReadOnly());
        ReadOnlySlotException e = assertThrows(ReadOnlySlotException.class, () -> v.set(VirtqDescriptor.LEN, 1));
        assertEquals(4 * MiB + 40, e.firstBadGpa());
        assertEquals(2, e.slotId());
        assertThrows(ReadOnlySlotException.class, () -> d.write(gm, 4 * MiB + 32));
        assertThrows(ReadOnlySlotException.class, () -> v.write(MemorySegment.ofArray(new long[2])));
        assertEquals(64, rom.segment().get(LE32, 40));
        assertEquals(0, gm.collectDirty(2).count());
    }

    @Test
    void aViewDiesWithItsSlotAndACopyFollowsTheMove() {
        try (HostRegion r = HostRegion.anonymous(MiB).create()) {
            gm.addRam(3, 8 * MiB, r);
            new VirtqDescriptor(7, 8, 0, 0).write(gm, 8 * MiB + 0x100);
            GuestStruct v = gm.struct(8 * MiB + 0x100, VirtqDescriptor.LAYOUT);
            gm.memslots().setMemslot(0, 3, 0, 16 * MiB, MiB, r.address()); // MOVE
            assertThrows(IllegalStateException.class, () -> v.get(VirtqDescriptor.ADDR));
            assertEquals(7, VirtqDescriptor.read(gm, 16 * MiB + 0x100).addr(), "the same bytes at the new gpa");
            assertThrows(PartialAccessException.class, () -> VirtqDescriptor.read(gm, 8 * MiB + 0x100));
            gm.removeRam(3);
        }
    }
}
