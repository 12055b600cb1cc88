package io.guestmem.access;

import io.guestmem.sys.UseAfterClose;

import io.guestmem.sys.Fmt;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.util.Objects;

/**
 * A zero-copy window {@code [gpa, gpa + byteSize())} of guest RAM inside one memslot, whose writes mark the
 * slot's {@link DirtyBitmap} (rust-vmm {@code vm-memory}'s {@code VolatileSlice} with its bitmap slice).
 * {@link GuestMemory#slice} makes one. A device model keeps it for a buffer it touches often (a virtqueue
 * ring, a frame buffer, a DMA target) and reads and writes it at offsets, with the same little-endian typed
 * accessors and ordering flavours as {@link GuestMemory}, without a slot lookup per access.
 *
 * <h2>What it checks</h2>
 * <ul>
 *   <li>Bounds: every access must lie inside the slice; one that does not throws IndexOutOfBoundsException
 *       before any byte is touched. A slice is addressed by offsets, as the arrays and buffers that
 *       GuestMemory's bulk calls take, and those are index errors there too; gpa-addressed calls (making the
 *       slice itself) throw {@link GuestMemoryException}s.</li>
 *   <li>Read-only: a slice of a READONLY slot (or of host memory mapped read-only) refuses every write with
 *       {@link ReadOnlySlotException} naming the gpa, before any byte is touched.</li>
 *   <li>Alignment: the opaque ({@code ...Volatile}) and acquire/release flavours need the gpa of the access
 *       to be a multiple of its size ({@link MisalignedAccessException}), as GuestMemory's do.</li>
 *   <li>Life: the slice is the slot's own view, so it stops working (IllegalStateException from any
 *       thread, never a crash) when the slot is deleted or moved, when its region closes, or when the
 *       GuestMemory closes. A FLAGS_ONLY change keeps it alive. For a GUEST_MEMFD slot the access policy was
 *       asked for every page when the slice was made; do not keep it across a conversion to private.</li>
 * </ul>
 *
 * <h2>Dirty tracking</h2>
 * Every write (bulk, fill, typed, channel reads into the slice) marks the pages it touched after the bytes
 * are stored, as GuestMemory's writes do; a channel read marks the bytes the channel actually delivered.
 * {@link #rawSegment()} is the way out of tracking, for code that must have a MemorySegment (a native call,
 * a {@code VarHandle} of the caller's): its writes are invisible to the dirty log until
 * {@link GuestMemory#markDirty} is called for them. Reading through it is always fine.
 *
 * <p>An empty slice ({@code slice(gpa, 0)}) belongs to no slot ({@link #slotId()} -1) and has nothing to
 * check; zero-byte calls on it succeed and every other access is out of bounds.
 *
 * <p>Immutable and thread-safe as guest memory is: concurrent accesses race as they would in the guest.
 * The typed accessors and the byte[] copies allocate nothing once compiled (AllocationTest); ByteBuffer and
 * fill calls make a segment view, channel transfers one ByteBuffer per GiB.
 */
public final class GuestSlice {
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle A8 = ValueLayout.JAVA_BYTE.varHandle();
    private static final VarHandle A16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    private static final VarHandle A32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    private static final VarHandle A64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    /** Channel transfers go through ByteBuffers, which hold at most 2 GiB - 1: move at most this per call. */
    private static final int MAX_IO_CHUNK = 1 << 30;

    private final MemorySegment seg;   // the slot view's bytes [gpa, gpa + size); read-only when readOnly != null
    private final long gpa;
    private final DirtyBitmap dirty;   // the slot's; null only for the empty slice
    private final long slotOffset;     // offset of seg's first byte in the slot
    private final int shift;           // log2 of the page size the dirty log counts in
    private final int slotId;
    private final String readOnly;     // why writes are refused, or null
    private final LayoutGate gate;     // the memory's, and the slot's hold: channel calls hold the slot (null: empty)
    private final SlotHold hold;

    GuestSlice(MemorySegment seg, long gpa, DirtyBitmap dirty, long slotOffset, int shift, int slotId, String readOnly,
               LayoutGate gate, SlotHold hold) {
        this.gate = gate;
        this.hold = hold;
        this.seg = seg;
        this.gpa = gpa;
        this.dirty = dirty;
        this.slotOffset = slotOffset;
        this.shift = shift;
        this.slotId = slotId;
        this.readOnly = readOnly;
    }

    /** The empty slice at {@code gpa}: of no slot, always alive. */
    static GuestSlice empty(long gpa) {
        return new GuestSlice(MemorySegment.NULL, gpa, null, 0, 0, -1, null, null, null);
    }

    // ------------------------------------------------------------------------------------------ what it is

    /** The guest physical address of byte 0. */
    public long gpa() {
        return gpa;
    }

    /** Bytes in the slice. */
    public long byteSize() {
        return seg.byteSize();
    }

    /** The id of the memslot the slice lies in (-1 for an empty slice). */
    public int slotId() {
        return slotId;
    }

    /** Whether writes are refused (a READONLY slot, or host memory mapped read-only). */
    public boolean isReadOnly() {
        return readOnly != null;
    }

    /** Whether the slice can still be accessed: false once its slot changed, its region or its memory closed. */
    public boolean isAlive() {
        return seg.scope().isAlive();
    }

    /**
     * {@code [offset, offset + length)} of this slice, as a slice of the same slot with the same tracking and
     * life. IndexOutOfBoundsException when it does not lie inside this one.
     */
    public GuestSlice subSlice(long offset, long length) {
        Objects.checkFromIndexSize(offset, length, seg.byteSize());
        return new GuestSlice(seg.asSlice(offset, length), gpa + offset, dirty, slotOffset + offset, shift, slotId, readOnly,
                gate, hold);
    }

    /**
     * The slice's bytes as a MemorySegment, <b>not dirty-tracked</b>: writes through it (or through buffers
     * and var handles made from it) are not in the slot's dirty log until {@link GuestMemory#markDirty} is
     * called for them, and a live migration would not send them. Read-only for a read-only slice; it dies
     * with the slice. For native calls and code that must have a segment.
     */
    public MemorySegment rawSegment() {
        return seg;
    }

    // ------------------------------------------------------------------------------------------ bulk

    /** Copies {@code dst.length} bytes at {@code offset} into {@code dst}. */
    public void read(long offset, byte[] dst) {
        read(offset, dst, 0, dst.length);
    }

    /** Copies {@code len} bytes at {@code offset} into {@code dst[dstOff..]}. */
    public void read(long offset, byte[] dst, int dstOff, int len) {
        MemorySegment.copy(seg, ValueLayout.JAVA_BYTE, offset, dst, dstOff, len);
    }

    /** Copies {@code dst.remaining()} bytes at {@code offset} into {@code dst}, whose position advances by them. */
    public void read(long offset, ByteBuffer dst) {
        int n = dst.remaining();
        MemorySegment.copy(seg, offset, MemorySegment.ofBuffer(dst), 0, n);
        dst.position(dst.position() + n);
    }

    /** Copies {@code dst.byteSize()} bytes at {@code offset} into {@code dst}. */
    public void read(long offset, MemorySegment dst) {
        MemorySegment.copy(seg, offset, dst, 0, dst.byteSize());
    }

    /** Copies {@code src} to {@code offset}. */
    public void write(long offset, byte[] src) {
        write(offset, src, 0, src.length);
    }

    /** Copies {@code src[srcOff..srcOff+len)} to {@code offset}. */
    public void write(long offset, byte[] src, int srcOff, int len) {
        checkWritable(offset, "write");
        MemorySegment.copy(src, srcOff, seg, ValueLayout.JAVA_BYTE, offset, len);
        mark(offset, len);
    }

    /** Copies {@code src.remaining()} bytes to {@code offset}; {@code src}'s position advances by them. */
    public void write(long offset, ByteBuffer src) {
        checkWritable(offset, "write");
        int n = src.remaining();
        MemorySegment.copy(MemorySegment.ofBuffer(src), 0, seg, offset, n);
        src.position(src.position() + n);
        mark(offset, n);
    }

    /** Copies the bytes of {@code src} to {@code offset}. */
    public void write(long offset, MemorySegment src) {
        checkWritable(offset, "write");
        long n = src.byteSize();
        MemorySegment.copy(src, 0, seg, offset, n);
        mark(offset, n);
    }

    /** Sets every byte of the slice to {@code value}. */
    public void fill(byte value) {
        fill(0, seg.byteSize(), value);
    }

    /** Sets {@code len} bytes at {@code offset} to {@code value}. */
    public void fill(long offset, long len, byte value) {
        checkWritable(offset, "fill");
        Objects.checkFromIndexSize(offset, len, seg.byteSize());
        seg.asSlice(offset, len).fill(value);
        mark(offset, len);
    }

    // ------------------------------------------------------------------------------------------ typed: plain

    /** The byte at {@code offset}, zero-extended. */
    public int readU8(long offset) {
        return Byte.toUnsignedInt(seg.get(ValueLayout.JAVA_BYTE, offset));
    }

    /** The little-endian u16 at {@code offset} (any alignment), zero-extended. */
    public int readU16(long offset) {
        return Short.toUnsignedInt(seg.get(U16, offset));
    }

    /** The little-endian u32 at {@code offset} (any alignment), as an int's bits. */
    public int readU32(long offset) {
        return seg.get(U32, offset);
    }

    /** The little-endian u64 at {@code offset} (any alignment). */
    public long readU64(long offset) {
        return seg.get(U64, offset);
    }

    /** Writes the low byte of {@code value} at {@code offset}. */
    public void writeU8(long offset, int value) {
        checkWritable(offset, "writeU8");
        seg.set(ValueLayout.JAVA_BYTE, offset, (byte) value);
        markOne(offset);
    }

    /** Writes the low 16 bits of {@code value}, little-endian, at {@code offset} (any alignment). */
    public void writeU16(long offset, int value) {
        checkWritable(offset, "writeU16");
        seg.set(U16, offset, (short) value);
        mark(offset, 2);
    }

    /** Writes {@code value}, little-endian, at {@code offset} (any alignment). */
    public void writeU32(long offset, int value) {
        checkWritable(offset, "writeU32");
        seg.set(U32, offset, value);
        mark(offset, 4);
    }

    /** Writes {@code value}, little-endian, at {@code offset} (any alignment). */
    public void writeU64(long offset, long value) {
        checkWritable(offset, "writeU64");
        seg.set(U64, offset, value);
        mark(offset, 8);
    }

    // ------------------------------------------------------------------------------------------ typed: opaque

    /** The byte at {@code offset} with opaque ordering, zero-extended. */
    public int readU8Volatile(long offset) {
        return Byte.toUnsignedInt((byte) A8.getOpaque(seg, offset));
    }

    /** The u16 at {@code offset} (gpa 2-byte aligned) with opaque ordering, zero-extended. */
    public int readU16Volatile(long offset) {
        return Short.toUnsignedInt((short) A16.getOpaque(seg, aligned(offset, 2, "readU16Volatile")));
    }

    /** The u32 at {@code offset} (gpa 4-byte aligned) with opaque ordering. */
    public int readU32Volatile(long offset) {
        return (int) A32.getOpaque(seg, aligned(offset, 4, "readU32Volatile"));
    }

    /** The u64 at {@code offset} (gpa 8-byte aligned) with opaque ordering. */
    public long readU64Volatile(long offset) {
        return (long) A64.getOpaque(seg, aligned(offset, 8, "readU64Volatile"));
    }

    /** Writes a byte with opaque ordering. */
    public void writeU8Volatile(long offset, int value) {
        checkWritable(offset, "writeU8Volatile");
        A8.setOpaque(seg, offset, (byte) value);
        markOne(offset);
    }

    /** Writes a u16 (gpa 2-byte aligned) with opaque ordering. */
    public void writeU16Volatile(long offset, int value) {
        checkWritable(offset, "writeU16Volatile");
        A16.setOpaque(seg, aligned(offset, 2, "writeU16Volatile"), (short) value);
        markOne(offset);
    }

    /** Writes a u32 (gpa 4-byte aligned) with opaque ordering. */
    public void writeU32Volatile(long offset, int value) {
        checkWritable(offset, "writeU32Volatile");
        A32.setOpaque(seg, aligned(offset, 4, "writeU32Volatile"), value);
        markOne(offset);
    }

    /** Writes a u64 (gpa 8-byte aligned) with opaque ordering. */
    public void writeU64Volatile(long offset, long value) {
        checkWritable(offset, "writeU64Volatile");
        A64.setOpaque(seg, aligned(offset, 8, "writeU64Volatile"), value);
        markOne(offset);
    }

    // ------------------------------------------------------------------------------------------ typed: acquire/release

    /** The byte at {@code offset} with acquire ordering (later accesses stay after it), zero-extended. */
    public int readU8Acquire(long offset) {
        return Byte.toUnsignedInt((byte) A8.getAcquire(seg, offset));
    }

    /** The u16 at {@code offset} (gpa 2-byte aligned) with acquire ordering, zero-extended. */
    public int readU16Acquire(long offset) {
        return Short.toUnsignedInt((short) A16.getAcquire(seg, aligned(offset, 2, "readU16Acquire")));
    }

    /** The u32 at {@code offset} (gpa 4-byte aligned) with acquire ordering. */
    public int readU32Acquire(long offset) {
        return (int) A32.getAcquire(seg, aligned(offset, 4, "readU32Acquire"));
    }

    /** The u64 at {@code offset} (gpa 8-byte aligned) with acquire ordering. */
    public long readU64Acquire(long offset) {
        return (long) A64.getAcquire(seg, aligned(offset, 8, "readU64Acquire"));
    }

    /** Writes a byte with release ordering (earlier accesses stay before it). */
    public void writeU8Release(long offset, int value) {
        checkWritable(offset, "writeU8Release");
        A8.setRelease(seg, offset, (byte) value);
        markOne(offset);
    }

    /** Writes a u16 (gpa 2-byte aligned) with release ordering. */
    public void writeU16Release(long offset, int value) {
        checkWritable(offset, "writeU16Release");
        A16.setRelease(seg, aligned(offset, 2, "writeU16Release"), (short) value);
        markOne(offset);
    }

    /** Writes a u32 (gpa 4-byte aligned) with release ordering. */
    public void writeU32Release(long offset, int value) {
        checkWritable(offset, "writeU32Release");
        A32.setRelease(seg, aligned(offset, 4, "writeU32Release"), value);
        markOne(offset);
    }

    /** Writes a u64 (gpa 8-byte aligned) with release ordering. */
    public void writeU64Release(long offset, long value) {
        checkWritable(offset, "writeU64Release");
        A64.setRelease(seg, aligned(offset, 8, "writeU64Release"), value);
        markOne(offset);
    }

    // ------------------------------------------------------------------------------------------ channels

    /**
     * Reads from {@code ch} straight into the slice from byte 0 (the channel reads into direct buffers over
     * guest RAM: no intermediate copy), until the slice is full, the stream ends, or a non-blocking channel
     * has nothing more now. Returns the bytes read, or -1 at end of stream before any byte; marks exactly the
     * pages of the bytes read, also when the channel throws after some. A read-only slice refuses before
     * anything is taken from the channel. {@link #subSlice} reads into part of it.
     */
    public long readFrom(ReadableByteChannel ch) throws IOException {
        Objects.requireNonNull(ch, "channel");
        checkWritable(0, "readFrom");
        holdSlot("readFrom");
        try {
            return readChannel(ch);
        } finally {
            if (hold != null) gate.unhold(hold);
        }
    }

    /**
     * Holds the slot for a channel call, as {@code GuestMemory}'s transfers do, so that a change that would
     * close this slice's view waits for the call (or is refused) rather than failing half-way: a change
     * pending on the slot is waited out first, and a slice it killed throws IllegalStateException.
     */
    private void holdSlot(String op) {
        if (hold == null) return;
        while (!gate.hold(hold)) {
            gate.awaitOutcome(hold);
            if (!seg.scope().isAlive()) throw UseAfterClose.of(this, op + ": its slot changed");
        }
        if (!seg.scope().isAlive()) {
            gate.unhold(hold);
            throw UseAfterClose.of(this, op + ": its slot changed");
        }
    }

    private long readChannel(ReadableByteChannel ch) throws IOException {
        long len = seg.byteSize(), done = 0;
        while (done < len) {
            ByteBuffer bb = seg.asSlice(done, Math.min(len - done, MAX_IO_CHUNK)).asByteBuffer();
            int r = 0;
            while (bb.hasRemaining()) {
                int before = bb.position();
                try {
                    r = ch.read(bb);
                } finally {
                    // what the channel stored is in guest memory now, even when it then failed
                    mark(done + before, bb.position() - before);
                }
                if (r <= 0) break;
            }
            done += bb.position();
            if (bb.hasRemaining()) return r < 0 && done == 0 ? -1 : done;
        }
        return done;
    }

    /**
     * Writes the slice to {@code ch} from byte 0, from direct buffers over guest RAM, until all of it is
     * written or a non-blocking channel takes no more now. Returns the bytes written.
     */
    public long writeTo(WritableByteChannel ch) throws IOException {
        Objects.requireNonNull(ch, "channel");
        holdSlot("writeTo");
        try {
            return writeChannel(ch);
        } finally {
            if (hold != null) gate.unhold(hold);
        }
    }

    private long writeChannel(WritableByteChannel ch) throws IOException {
        long len = seg.byteSize(), done = 0;
        while (done < len) {
            ByteBuffer bb = seg.asSlice(done, Math.min(len - done, MAX_IO_CHUNK)).asByteBuffer();
            while (bb.hasRemaining()) {
                if (ch.write(bb) <= 0) break;
            }
            done += bb.position();
            if (bb.hasRemaining()) break;
        }
        return done;
    }

    // ------------------------------------------------------------------------------------------ checks and marks

    private void checkWritable(long offset, String op) {
        if (readOnly != null) throw new ReadOnlySlotException(op, gpa + offset, 0, slotId, readOnly);
    }

    /** {@code offset} when the gpa of a {@code size}-byte access there is a multiple of the size. */
    private long aligned(long offset, int size, String op) {
        if (((gpa + offset) & (size - 1)) != 0) throw new MisalignedAccessException(op, gpa + offset, size, slotId);
        return offset;
    }

    /** Marks the page of a write that does not cross a page (a byte, an aligned access). */
    private void markOne(long offset) {
        dirty.mark((slotOffset + offset) >>> shift);
    }

    /** Marks the pages of {@code n} bytes written at {@code offset} (after the write: see DirtyBitmap). */
    private void mark(long offset, long n) {
        if (n <= 0) return;
        long first = (slotOffset + offset) >>> shift, last = (slotOffset + offset + n - 1) >>> shift;
        if (first == last) dirty.mark(first);
        else dirty.markRange(first, last - first + 1);
    }

    @Override
    public String toString() {
        return "GuestSlice[gpa " + Fmt.hex(gpa) + "+" + Fmt.hex(seg.byteSize()) + (slotId < 0 ? "" : " of slot " + slotId)
                + (readOnly != null ? ", read-only" : "") + "]";
    }
}
