package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import org.junit.jupiter.api.Test;

/**
 * Zero-copy slices: bounded to one slot, and dead (IllegalStateException, never a crash) after DELETE, MOVE or close.
 * (Their dirty tracking, typed flavours and channel I/O: GuestSliceTest.)
 */
class SliceTest {
    static final long MiB = 1 << 20;

    @Test
    void aSliceIsTheGuestMemoryItselfAndStaysInsideItsSlot() {
        try (HostRegion r = HostRegion.anonymous(2 * MiB).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(0, 0, r, 0, MiB, 0);
            gm.addRam(1, MiB, r, MiB, MiB, 0); // adjacent, same region: still two slots
            GuestSlice s = gm.slice(0x1000, 0x100);
            s.writeU64(8, 0x55aa55aa55aa55aaL);
            assertEquals(0x55aa55aa55aa55aaL, gm.readU64(0x1008), "no copy: the slice is guest RAM");
            assertEquals(0x55aa55aa55aa55aaL, r.segment().get(ValueLayout.JAVA_LONG_UNALIGNED, 0x1008));
            assertEquals(0x100, s.byteSize());
            assertEquals(0x1000, s.gpa());
            assertEquals(0, s.slotId());
            PartialAccessException e = assertThrows(PartialAccessException.class, () -> gm.slice(MiB - 8, 16));
            assertEquals(MiB, e.firstBadGpa(), "names where the slot ends");
            assertEquals(0, e.slotId());
            assertThrows(PartialAccessException.class, () -> gm.slice(3 * MiB, 8));
            gm.close();
        }
    }

    @Test
    void deletingTheSlotKillsItsSlices() {
        try (HostRegion r = HostRegion.anonymous(MiB).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(3, 0, r);
            GuestSlice s = gm.slice(0, 4096);
            ByteBuffer bb = s.rawSegment().asByteBuffer();
            s.writeU32(0, 7);
            gm.removeRam(3);
            assertFalse(s.isAlive());
            assertThrows(IllegalStateException.class, () -> s.readU32(0));
            assertThrows(IllegalStateException.class, () -> s.writeU32(0, 8));
            assertThrows(IllegalStateException.class, () -> s.subSlice(0, 8).readU32(0), "sub-slices die with it");
            assertThrows(IllegalStateException.class, () -> bb.getInt(0), "buffers made from the slice die too");
            assertEquals(7, r.segment().get(ValueLayout.JAVA_INT, 0), "the memory itself is untouched and still mapped");
            assertThrows(PartialAccessException.class, () -> gm.readU32(0));
            gm.close();
        }
    }

    @Test
    void movingTheSlotKillsItsSlicesAndTheNewGpaSeesTheSameBytes() {
        try (HostRegion r = HostRegion.anonymous(MiB).create()) {
            Memslots slots = new Memslots();
            GuestMemory gm = new GuestMemory(slots);
            gm.addRam(3, 0, r);
            GuestSlice s = gm.slice(0x2000, 64);
            s.writeU64(0, 0xfeedL);
            slots.setMemslot(0, 3, 0, 16 * MiB, MiB, r.address()); // MOVE
            assertThrows(IllegalStateException.class, () -> s.readU64(0));
            assertEquals(0xfeedL, gm.readU64(16 * MiB + 0x2000));
            assertThrows(PartialAccessException.class, () -> gm.readU64(0x2000));
            assertEquals(0xfeedL, gm.slice(16 * MiB + 0x2000, 8).readU64(0));
            gm.close();
        }
    }

    @Test
    void closingTheRegionKillsItsSlicesWithoutACrash() {
        Memslots slots = new Memslots();
        GuestMemory gm = new GuestMemory(slots);
        HostRegion r = HostRegion.anonymous(MiB).create();
        gm.addRam(0, 0, r);
        GuestSlice s = gm.slice(0, MiB);
        s.writeU8(5, 1);
        r.close(); // unmaps: a stale raw access would SIGSEGV the JVM
        assertThrows(IllegalStateException.class, () -> s.readU8(5));
        assertThrows(IllegalStateException.class, () -> s.rawSegment().get(ValueLayout.JAVA_BYTE, 5));
        PartialAccessException e = assertThrows(PartialAccessException.class, () -> gm.readU8(5));
        assertEquals(GuestMemoryException.Reason.NO_HOST_MEMORY, e.reason());
        assertEquals(1, slots.current().size(), "the memslot stays; only its backing is gone");
        gm.close();
    }

    @Test
    void closingGuestMemoryKillsSlicesButNotTheRegion() {
        try (HostRegion r = HostRegion.anonymous(MiB).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(0, 0, r);
            GuestSlice s = gm.slice(0, 8);
            gm.close();
            assertThrows(IllegalStateException.class, () -> s.readU64(0));
            assertThrows(IllegalStateException.class, () -> s.writeU64(0, 1));
            assertEquals(0, r.segment().get(ValueLayout.JAVA_LONG, 0));
        }
    }

    @Test
    void flagsOnlyChangesKeepSlicesAlive() {
        try (HostRegion r = HostRegion.anonymous(MiB).create()) {
            Memslots slots = new Memslots();
            GuestMemory gm = new GuestMemory(slots);
            gm.addRam(0, 0, r);
            GuestSlice s = gm.slice(0, 8);
            slots.setMemslot(0, 0, io.guestmem.memslot.Memslot.LOG_DIRTY_PAGES, 0, MiB, r.address());
            s.writeU64(0, 3);
            assertEquals(3, gm.readU64(0));
            assertTrue(gm.dirtyBitmap(0).isDirty(0), "the slice still marks the slot's (kept) dirty log");
            gm.close();
        }
    }
}
