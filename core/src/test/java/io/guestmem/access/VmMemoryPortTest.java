package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.sys.Posix;
import java.io.IOException;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.Channels;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.channels.FileChannel;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The port check: rust-vmm vm-memory's own unit tests that concern {@code Bytes}, {@code GuestMemory}, slices
 * and the dirty bitmap, expressed against this library on real memory. Each test names the vm-memory test it
 * ports ({@code module::test_name}, vm-memory's source tree) and says where the Java API deliberately
 * differs.
 *
 * <p>Two differences hold throughout. Regions: vm-memory's regions may be any length (0x400 bytes); KVM's
 * memslots, and so ours, are whole pages. So every vm-memory region of up to a page becomes one page of
 * {@link #P} bytes (the machine's page size, 4 KiB or 16 KiB), and addresses are scaled so that each region
 * and hole keeps its place relative to the others. Errors: vm-memory returns a short count
 * ({@code write} returns 1 when 1 byte fits) or a {@code PartialBuffer}/{@code InvalidGuestAddress} error; here
 * a bulk access that cannot finish throws a {@link GuestMemoryException} whose {@link
 * GuestMemoryException#bytesDone()} is vm-memory's count and whose {@link GuestMemoryException#firstBadGpa()}
 * is its address.
 */
class VmMemoryPortTest {
    static final long P = Posix.PAGE_SIZE;

    final List<HostRegion> regions = new ArrayList<>();
    GuestMemory gm;

    /** A GuestMemory with one slot of fresh anonymous memory per {@code {gpa, bytes}} pair. */
    GuestMemory memory(long... gpaAndSize) {
        gm = new GuestMemory(new Memslots());
        for (int k = 0; k < gpaAndSize.length; k += 2) {
            HostRegion r = HostRegion.anonymous(gpaAndSize[k + 1]).create();
            regions.add(r);
            gm.addRam(k / 2, gpaAndSize[k], r);
        }
        return gm;
    }

    /** The same layout backed by files (vm-memory's {@code from_ranges_with_files}): a memfd per slot. */
    GuestMemory fileBacked(long... gpaAndSize) {
        gm = new GuestMemory(new Memslots());
        for (int k = 0; k < gpaAndSize.length; k += 2) {
            HostRegion r = HostRegion.memfd(gpaAndSize[k + 1]).create();
            regions.add(r);
            gm.addRam(k / 2, gpaAndSize[k], r);
        }
        return gm;
    }

    @AfterEach
    void tearDown() {
        if (gm != null) gm.close();
        for (HostRegion r : regions) r.close();
    }

    /** mmap::tests::test_read_u64: write_obj/read_obj of a u64 in two adjacent regions, plain and file-backed. */
    @Test
    void readU64() {
        for (int backing = 0; backing < 2; backing++) {
            GuestMemory m = backing == 0 ? memory(0, P, P, P) : fileBacked(0, P, P, P);
            long badAddr = 2 * P + 1, badAddr2 = 2 * P - 4, maxAddr = 2 * P;
            long val1 = 0xaa55_aa55_aa55_aa55L, val2 = 0x55aa_55aa_55aa_55aaL;
            GuestMemoryException e = assertThrows(PartialAccessException.class, () -> m.writeU64(badAddr, val1));
            assertEquals(badAddr, e.firstBadGpa());
            assertEquals(0, e.bytesDone());
            // vm-memory: PartialBuffer { expected: 8, completed: 4 }: the 4 bytes that fit are written. Here a
            // typed write is all or nothing (a u64 half-written across a hole would be worse than none): it
            // names the same first bad gpa, with 0 bytes done, and the 4 bytes before it stay as they were.
            e = assertThrows(PartialAccessException.class, () -> m.writeU64(badAddr2, val1));
            assertEquals(maxAddr, e.firstBadGpa());
            assertEquals(0, e.bytesDone());
            assertEquals(0, m.readU32(badAddr2));
            m.writeU64(0x500, val1);
            m.writeU64(P + 32, val2);
            assertEquals(val1, m.readU64(0x500));
            assertEquals(val2, m.readU64(P + 32));
            tearDown();
            regions.clear();
            gm = null;
        }
    }

    /** mmap::tests::write_and_read: 5 bytes written and read back; at the region's last byte only 1 fits. */
    @Test
    void writeAndRead() {
        for (int backing = 0; backing < 2; backing++) {
            GuestMemory m = backing == 0 ? memory(P, P) : fileBacked(P, P);
            byte[] sample = {1, 2, 3, 4, 5};
            m.write(P, sample);
            byte[] buf = new byte[5];
            m.read(P, buf);
            assertArrayEquals(sample, buf);
            // vm-memory's write returns 1 here; ours throws after writing that 1 byte, and says so.
            long last = 2 * P - 1;
            GuestMemoryException e = assertThrows(PartialAccessException.class, () -> m.write(last, sample));
            assertEquals(1, e.bytesDone());
            assertEquals(sample[0], (byte) m.readU8(last));
            tearDown();
            regions.clear();
            gm = null;
        }
    }

    /** mmap::tests::test_access_cross_boundary: a 5-byte write across two adjacent regions succeeds whole. */
    @Test
    void accessCrossBoundary() {
        for (int backing = 0; backing < 2; backing++) {
            GuestMemory m = backing == 0 ? memory(0, P, P, P) : fileBacked(0, P, P, P);
            byte[] sample = {1, 2, 3, 4, 5};
            m.write(P - 4, sample);
            byte[] buf = new byte[5];
            m.read(P - 4, buf);
            assertArrayEquals(sample, buf);
            tearDown();
            regions.clear();
            gm = null;
        }
    }

    /**
     * mmap::tests::read_to_and_write_from_mem: read_exact_volatile_from /dev/zero over a u32 of ~0, then
     * write_all_volatile_to a sink. Here: {@code readFullyFrom} a channel of /dev/zero and {@code writeTo} a
     * byte-array channel.
     */
    @Test
    void readToAndWriteFromMem() throws IOException {
        GuestMemory m = memory(P, P);
        long addr = P + 0x10;
        m.writeU32(addr, ~0);
        try (FileChannel zero = FileChannel.open(Path.of("/dev/zero"), StandardOpenOption.READ)) {
            assertEquals(4, m.readFullyFrom(addr, zero, 4));
        }
        assertEquals(0, m.readU32(addr));
        ByteArrayOutputStream sink = new ByteArrayOutputStream();
        try (WritableByteChannel ch = Channels.newChannel(sink)) {
            assertEquals(4, m.writeFullyTo(addr, ch, 4));
        }
        assertArrayEquals(new byte[4], sink.toByteArray());
    }

    /**
     * guest_memory::tests::test_zero_length_accesses: empty reads, writes, object accesses and channel
     * transfers succeed and do nothing. (A zero-sized object is a zero-byte layout here: refused by
     * {@code struct}, which wants a layout with bytes, so the object part uses an empty slice instead.)
     */
    @Test
    void zeroLengthAccesses() throws IOException {
        GuestMemory m = memory(P, P);
        long addr = P;
        m.write(addr, new byte[0]);
        m.read(addr, new byte[0]);
        assertEquals(0, m.slice(addr, 0).byteSize());
        ReadableByteChannel image = Channels.newChannel(new ByteArrayInputStream(new byte[0x80]));
        assertEquals(0, m.readFrom(addr, image, 0));
        assertEquals(0, m.readFullyFrom(addr, image, 0));
        WritableByteChannel out = Channels.newChannel(new ByteArrayOutputStream());
        assertEquals(0, m.writeTo(addr, out, 0));
        assertEquals(0, m.writeFullyTo(addr, out, 0));
        assertTrue(m.collectDirty(0).isEmpty(), "a zero-length write marks nothing");
    }

    /**
     * guest_memory::tests::test_atomic_accesses and bytes::tests::check_atomic_accesses: a relaxed u32 load
     * reads 0, a store is seen by the next load, and both refuse an address past the region. vm-memory's
     * relaxed load/store are the opaque ({@code ...Volatile}) flavour here; acquire/release are checked too.
     */
    @Test
    void atomicAccesses() {
        GuestMemory m = memory(P, P);
        long addr = P, bad = 2 * P;
        assertEquals(0, m.readU32Volatile(addr));
        m.writeU32Volatile(addr, 100);
        assertEquals(100, m.readU32Volatile(addr));
        m.writeU32Release(addr + 4, 200);
        assertEquals(200, m.readU32Acquire(addr + 4));
        assertEquals(100, m.getAndAddU32(addr, 1));
        assertTrue(m.compareAndSetU32(addr, 101, 102));
        assertThrows(PartialAccessException.class, () -> m.readU32Volatile(bad));
        assertThrows(PartialAccessException.class, () -> m.writeU32Volatile(bad, 100));
        assertThrows(PartialAccessException.class, () -> m.readU32Acquire(bad));
        assertThrows(PartialAccessException.class, () -> m.writeU32Release(bad, 100));
    }

    /**
     * guest_memory::tests::test_non_atomic_access (non_atomic_access_helper): an access that is not
     * naturally aligned cannot be atomic. vm-memory refuses it with {@code Error::Misaligned}'s counterpart in
     * its volatile layer; here the typed exception is {@link MisalignedAccessException}, while the plain
     * flavour accepts any alignment.
     */
    @Test
    void nonAtomicAccess() {
        GuestMemory m = memory(P, P);
        long odd = P + 1;
        MisalignedAccessException e = assertThrows(MisalignedAccessException.class, () -> m.readU16Volatile(odd));
        assertEquals(GuestMemoryException.Reason.MISALIGNED, e.reason());
        assertThrows(MisalignedAccessException.class, () -> m.writeU16Release(odd, 1));
        assertThrows(MisalignedAccessException.class, () -> m.compareAndSetU64(P + 4, 0, 1));
        m.writeU16(odd, 0xbeef);
        assertEquals(0xbeef, m.readU16(odd));
    }

    /**
     * mmap::tests::test_guest_memory_get_slice: slices inside a region, an empty slice, and the two errors
     * (past the region's end; in a hole or past the last region). vm-memory's InvalidBackendAddress is a
     * {@link PartialAccessException} naming the region's end here.
     */
    @Test
    void guestMemoryGetSlice() {
        GuestMemory m = memory(0, P, 2 * P, P);
        assertEquals(P / 2, m.slice(P / 4, P / 2).byteSize());
        assertEquals(P, m.slice(2 * P, P).byteSize());
        assertEquals(0, m.slice(2 * P + P / 4, 0).byteSize());
        GuestMemoryException e = assertThrows(PartialAccessException.class, () -> m.slice(0, P + P / 4));
        assertEquals(P, e.firstBadGpa());
        e = assertThrows(PartialAccessException.class, () -> m.slice(P + P / 2, P / 4));
        assertEquals(P + P / 2, e.firstBadGpa());
        assertEquals(GuestMemoryException.Reason.NOT_RAM, e.reason());
        e = assertThrows(PartialAccessException.class, () -> m.slice(3 * P, P / 4));
        assertEquals(3 * P, e.firstBadGpa());
    }

    /**
     * mmap::tests::test_guest_memory_get_slices: the same cases through get_slices, plus a range fragmented
     * over two regions. vm-memory's iterator yields the slices before an error and then the error; {@code
     * buffers} checks the whole range first and refuses it whole (a device must not start a transfer it
     * cannot finish), naming the same first bad address.
     */
    @Test
    void guestMemoryGetSlices() {
        GuestMemory m = memory(0, P, 2 * P, P, 3 * P, P);
        GuestBuffers b = m.buffers(P / 4, P / 2, false);
        assertEquals(1, b.count());
        assertEquals(P / 2, b.totalLength());
        b = m.buffers(2 * P, P, false);
        assertEquals(1, b.count());
        assertEquals(P, b.memory(0).byteSize());
        assertEquals(0, m.buffers(2 * P + P / 4, 0, false).count());
        GuestMemoryException e = assertThrows(PartialAccessException.class, () -> m.buffers(0, P + P / 4, false));
        assertEquals(P, e.firstBadGpa());
        e = assertThrows(PartialAccessException.class, () -> m.buffers(P + P / 2, P / 4, false));
        assertEquals(P + P / 2, e.firstBadGpa());
        e = assertThrows(PartialAccessException.class, () -> m.buffers(4 * P, P / 4, false));
        assertEquals(4 * P, e.firstBadGpa());
        // Fragmented: [2.5P, 3.5P) is half of slot 1 and half of slot 2.
        b = m.buffers(2 * P + P / 2, P, false);
        assertEquals(2, b.count());
        assertEquals(P / 2, b.memory(0).byteSize());
        assertEquals(P / 2, b.memory(1).byteSize());
        assertEquals(3 * P, b.gpa(1));
    }

    /**
     * mmap::tests::test_guest_memory_mmap_as_volatile_slice: a slice of a whole region has its length, and a
     * u32 stored through it reads back (get_ref + store/load is the opaque flavour of the slice here).
     */
    @Test
    void guestMemoryMmapAsVolatileSlice() {
        GuestMemory m = memory(0, P);
        GuestSlice s = m.slice(0, P);
        assertEquals(P, s.byteSize());
        s.writeU32Volatile(P / 2, 0x1234_5678);
        assertEquals(0x1234_5678, s.readU32Volatile(P / 2));
        assertEquals(0x1234_5678, m.readU32(P / 2), "the slice is the guest's memory, not a copy");
    }

    /**
     * bitmap::tests::test_guest_memory_and_region and test_bytes (via mmap::tests::test_dirty_tracking): a
     * write_obj marks the region's bitmap and the slice's; then write, write_slice, write_obj and store each
     * mark a clean range, one region page apart. vm-memory's bitmap has a configurable granularity; ours is the
     * page, as KVM's dirty log is, so "range dirty" means its pages are.
     */
    @Test
    void dirtyTracking() {
        GuestMemory m = memory(0, 16 * P);
        long dirtyAddr = P;
        GuestSlice slice = m.slice(dirtyAddr, 8);
        DirtyBitmap bitmap = m.dirtyBitmap(0);
        assertEquals(0, bitmap.count());
        m.writeU64(dirtyAddr, 123);
        assertTrue(bitmap.isDirty(dirtyAddr / P));
        assertEquals(1, bitmap.count());
        m.collectDirty(0);
        // test_bytes: offsets 2P, 3P, 4P, 5P; each range 1024 bytes, clean before, dirty after.
        byte[] buf = new byte[1024];
        java.util.Arrays.fill(buf, (byte) 1);
        long off = 2 * P;
        assertFalse(bitmap.isDirty(off / P));
        m.write(off, buf);                                   // write
        assertTrue(bitmap.isDirty(off / P));
        off += P;
        assertFalse(bitmap.isDirty(off / P));
        slice = m.slice(off, buf.length);
        slice.write(0, buf);                                 // write_slice: through a slice, tracked
        assertTrue(bitmap.isDirty(off / P));
        off += P;
        assertFalse(bitmap.isDirty(off / P));
        m.writeStruct(off, ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN),
                MemorySegment.ofArray(new long[] {1}));      // write_obj
        assertTrue(bitmap.isDirty(off / P));
        off += P;
        assertFalse(bitmap.isDirty(off / P));
        m.writeU64Volatile(off, 1);                          // store
        assertTrue(bitmap.isDirty(off / P));
        assertEquals(4, m.collectDirty(0).count());
    }

    /**
     * volatile_memory::tests::test_volatile_slice_dirty_tracking (bitmap::tests::test_volatile_memory): writes
     * through a whole-memory slice and a sub-slice mark the pages under them; a get_ref store marks too.
     */
    @Test
    void volatileSliceDirtyTracking() {
        GuestMemory m = memory(0, 8 * P);
        GuestSlice s1 = m.slice(0, 8 * P);
        GuestSlice s2 = s1.subSlice(P, 8);
        DirtyBitmap bitmap = m.dirtyBitmap(0);
        assertEquals(0, bitmap.count());
        s1.writeU64(P, 123);
        assertTrue(bitmap.isDirty(1));
        assertEquals(123, s2.readU64(0));
        s2.writeU64Volatile(0, 124);
        assertEquals(1, bitmap.count());
        assertFalse(bitmap.isDirty(2));
        s1.writeU64Release(2 * P, 1);                       // get_ref(0x2000).store
        assertTrue(bitmap.isDirty(2));
        s1.fill(3 * P, 16, (byte) 7);                        // an array ref's copy_from
        assertTrue(bitmap.isDirty(3));
        assertEquals(3, bitmap.count());
    }

    /**
     * volatile_memory::tests::test_write_past_end and test_read_from_exceeds_size: a slice refuses an access
     * past its end before touching anything, and a read from a channel into a slice fills at most the slice.
     */
    @Test
    void slicePastEnd() throws IOException {
        GuestMemory m = memory(0, P);
        GuestSlice s = m.slice(0, 5);
        assertThrows(IndexOutOfBoundsException.class, () -> s.write(2, new byte[5]));
        assertThrows(IndexOutOfBoundsException.class, () -> s.writeU32(4, 1));
        assertTrue(m.collectDirty(0).isEmpty(), "a refused slice write marks nothing");
        assertEquals(0, m.readU64(0), "and stores nothing");
        ReadableByteChannel big = Channels.newChannel(new ByteArrayInputStream(new byte[] {1, 2, 3, 4, 5, 6, 7, 8}));
        assertEquals(5, s.readFrom(big));
        assertEquals(0, m.readU8(5), "the byte past the slice is untouched");
        assertEquals(5, m.readU8(4));
    }

    /**
     * bytes::tests::test_byte_valued_io (write_obj/read_obj of a structure): a structure written whole reads
     * back whole. ByteValued's counterpart is an FFM layout (little-endian members).
     */
    @Test
    void byteValuedIo() {
        GuestMemory m = memory(0, P);
        MemoryLayout header = MemoryLayout.structLayout(
                ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).withName("flags"),
                ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).withName("idx"),
                ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN).withName("len"));
        MemorySegment v = MemorySegment.ofArray(new byte[8]);
        v.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0, (short) 1);
        v.set(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 2, (short) 7);
        v.set(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 4, 4096);
        m.writeStruct(0x40, header, v);
        MemorySegment back = m.readStruct(0x40, header);
        assertEquals(-1, back.mismatch(v));
        GuestStruct s = m.struct(0x40, header);
        assertEquals(7, s.get(GuestStruct.field(header, "idx")));
        assertEquals(4096, s.get(GuestStruct.field(header, "len")));
        // A structure crossing the region's end: refused with 0 bytes done (vm-memory: PartialBuffer).
        GuestMemoryException e = assertThrows(PartialAccessException.class, () -> m.readStruct(P - 4, header));
        assertEquals(0, e.bytesDone());
    }

    /**
     * atomic_bitmap::tests::test_bitmap_basic, test_bitmap_reset and test_bitmap_out_of_range, on the VMM's
     * dirty bitmap. vm-memory's AtomicBitmap is byte-addressed with a page granularity and takes ranges of
     * bytes; ours is indexed by page. Out-of-range is where the two differ by design: AtomicBitmap silently
     * ignores bits past its end; ours refuses them (a mark past a slot is a bug in the caller).
     */
    @Test
    void bitmapBasicResetOutOfRange() {
        assertEquals(17, DirtyBitmap.wordsFor(1025)); // the size rounds up: 1025 pages take 17 words
        assertEquals(16, DirtyBitmap.wordsFor(1024));
        DirtyBitmap b = new DirtyBitmap(1024);
        b.markRange(1, 2);                       // set_addr_range(128, 129) with 128-byte pages: pages 1 and 2
        assertFalse(b.isDirty(0));
        assertTrue(b.isDirty(1));
        assertTrue(b.isDirty(2));
        assertFalse(b.isDirty(3));
        long[] v = b.getAndClear();              // get_and_reset
        assertFalse(b.isDirty(1));
        assertFalse(b.isDirty(2));
        assertEquals(0b110, v[0]);
        assertEquals(0, b.count());
        DirtyBitmap c = new DirtyBitmap(1024);
        c.markRange(768, 256);
        assertTrue(c.isDirty(768));
        assertTrue(c.isDirty(1023));
        assertThrows(RuntimeException.class, () -> c.markRange(1000, 100));
        assertThrows(RuntimeException.class, () -> c.isDirty(1024));
    }

    /**
     * region::tests::test_mmap_remove_region and mmap::tests::test_change_region_addr: a removed region is no
     * longer found, and a region moved to a new address is found there only. Removing is {@code removeRam};
     * moving is a new slot of the same host memory. Unlike vm-memory, the old slice of a removed region dies.
     */
    @Test
    void removeAndChangeRegionAddr() {
        GuestMemory m = memory(P, P);
        HostRegion r = regions.get(0);
        m.writeU64(P, 42);
        GuestSlice old = m.slice(P, 8);
        assertTrue(m.slotIndexOf(P) >= 0);
        assertTrue(m.slotIndexOf(2 * P) < 0);
        m.removeRam(0);
        assertTrue(m.slotIndexOf(P) < 0);
        assertThrows(IllegalStateException.class, () -> old.readU64(0), "a slice of a removed slot is dead");
        m.addRam(0, 2 * P, r);
        assertTrue(m.slotIndexOf(P) < 0);
        assertTrue(m.slotIndexOf(2 * P) >= 0);
        assertEquals(42, m.readU64(2 * P), "the same memory, at its new address");
    }

    /**
     * region::tests::test_no_memory_region, test_overlapping_memory_regions and test_check_address: no slot is
     * not RAM anywhere; overlapping slots are refused by the memslot writer (KVM's EEXIST), and check_address
     * is {@code slotIndexOf} (-1 outside RAM).
     */
    @Test
    void noOverlappingRegionsAndCheckAddress() {
        GuestMemory m = memory();
        assertThrows(PartialAccessException.class, () -> m.readU8(0));
        HostRegion r = HostRegion.anonymous(2 * P).create();
        regions.add(r);
        m.addRam(0, 0, r, 0, P, 0);
        Exception e = assertThrows(RuntimeException.class, () -> m.addRam(1, 0, r, P, P, 0));
        assertTrue(e.getMessage().contains("EEXIST"), e.getMessage());
        assertEquals(-1, m.slotIndexOf(P));
        assertEquals(0, m.slotIndexOf(P - 1));
    }

    /**
     * atomic::tests::test_atomic_hotplug: a snapshot taken before three regions are hot-plugged still sees two
     * while a new one sees five, and a region overlapping one of them is refused. A {@link GuestMemory.Pin} is
     * the snapshot here, with KVM's semantics rather than vm-memory's: the layout cannot change under it (the
     * hot-plug waits until the pin closes, as a memslot change waits for SRCU readers), instead of the old
     * layout living on beside the new one.
     */
    @Test
    void atomicHotplug() throws Exception {
        GuestMemory m = memory(0, P, 0x100 * P, P);
        m.setDrainTimeout(java.time.Duration.ofSeconds(60)); // the pin below is released well before
        HostRegion extra = HostRegion.anonymous(3 * P).create();
        regions.add(extra);
        java.util.concurrent.atomic.AtomicReference<Throwable> failed = new java.util.concurrent.atomic.AtomicReference<>();
        Thread hotplug = new Thread(() -> {
            try {
                m.addRam(2, 8 * P, extra, 0, P, 0);
                m.addRam(3, 4 * P, extra, P, P, 0);
                m.addRam(4, 0xc * P, extra, 2 * P, P, 0);
            } catch (Throwable t) {
                failed.set(t);
            }
        }, "hotplug");
        try (GuestMemory.Pin pin = m.pin()) {
            long generation = m.memslotSet().generation();
            hotplug.start();
            Thread.sleep(200);
            assertEquals(2, m.memslotSet().size(), "the pinned walk still sees two regions");
            assertEquals(generation, m.memslotSet().generation());
            assertTrue(m.slotIndexOf(8 * P) < 0);
        }
        hotplug.join(60_000);
        assertFalse(hotplug.isAlive(), "the hot-plug finished once the pin closed");
        assertNull(failed.get(), () -> "hot-plug failed: " + failed.get());
        assertEquals(5, m.memslotSet().size());
        for (long g : new long[] {0, 4 * P, 8 * P, 0xc * P, 0x100 * P}) assertTrue(m.slotIndexOf(g) >= 0, "a slot at " + g);
        Exception e = assertThrows(RuntimeException.class, () -> m.addRam(5, 8 * P, extra, 0, P, 0));
        assertTrue(e.getMessage().contains("EEXIST"), e.getMessage());
    }
}
