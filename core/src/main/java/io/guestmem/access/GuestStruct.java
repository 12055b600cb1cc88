package io.guestmem.access;

import io.guestmem.sys.Fmt;

import java.lang.foreign.AddressLayout;
import java.lang.foreign.Arena;
import java.lang.foreign.GroupLayout;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SequenceLayout;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Objects;

/**
 * A structure in guest memory described by an FFM {@link MemoryLayout} (the Java counterpart of rust-vmm
 * {@code vm-memory}'s {@code ByteValued} objects): a live view of {@code layout.byteSize()} bytes at a gpa,
 * inside one slot, whose field writes are dirty-tracked. {@link GuestMemory#struct} makes one;
 * {@link GuestMemory#readStruct}/{@link GuestMemory#writeStruct} copy a whole structure instead.
 *
 * <h2>Layouts</h2>
 * Guest memory is little-endian here (x86-64 and arm64 guests, and virtio 1.x by specification), so every
 * member of a layout must be little-endian or a single byte: a big-endian member is refused
 * (IllegalArgumentException naming it) rather than silently byte-swapped, since a layout written for a
 * big-endian device must be converted explicitly. Host addresses ({@link AddressLayout}) mean nothing in
 * guest memory and are refused too. {@code ValueLayout.JAVA_LONG} and friends are in the host's order, which
 * is little-endian on every architecture guestmem runs on; {@code withOrder(ByteOrder.LITTLE_ENDIAN)} says it
 * explicitly. The structure need not be aligned to the layout in guest memory (fields are accessed
 * unaligned), but it must lie in one slot.
 *
 * <h2>Fields</h2>
 * A {@link Field} is resolved once from a layout ({@link #field(MemoryLayout, String...)}) and then read
 * and written as an unsigned integer of its size: u8, u16 and u32 come back zero-extended in a long. Field
 * access is a bounds-checked plain load or store at a constant offset; a store marks its page dirty.
 *
 * <p>The view lives as its {@link GuestSlice} does (IllegalStateException once the slot changed, its region
 * or its memory closed). Thread-safe.
 */
public final class GuestStruct {
    private final GuestSlice slice;
    private final MemoryLayout layout;

    GuestStruct(GuestSlice slice, MemoryLayout layout) {
        this.slice = slice;
        this.layout = layout;
    }

    /** The gpa of the structure's first byte. */
    public long gpa() {
        return slice.gpa();
    }

    public MemoryLayout layout() {
        return layout;
    }

    /** The structure's bytes as a tracked slice (for byte arrays, channels, sub-structures). */
    public GuestSlice slice() {
        return slice;
    }

    /** A copy of the whole structure, aligned for the layout (its var handles read the copy's fields). */
    public MemorySegment read() {
        MemorySegment copy = allocate(layout);
        slice.read(0, copy);
        return copy;
    }

    /** Writes the whole structure from {@code value} ({@code layout().byteSize()} bytes). */
    public void write(MemorySegment value) {
        if (value.byteSize() != layout.byteSize())
            throw new IllegalArgumentException(value.byteSize() + " bytes for " + layout + " of " + layout.byteSize());
        slice.write(0, value);
    }

    /** Field {@code f} as an unsigned integer (u8, u16, u32 zero-extended). */
    public long get(Field f) {
        check(f);
        long o = f.offset();
        return switch (f.size()) {
            case 1 -> slice.readU8(o);
            case 2 -> slice.readU16(o);
            case 4 -> Integer.toUnsignedLong(slice.readU32(o));
            default -> slice.readU64(o);
        };
    }

    /** Stores the low {@code f.size()} bytes of {@code value} in field {@code f}, little-endian. */
    public void set(Field f, long value) {
        check(f);
        long o = f.offset();
        switch (f.size()) {
            case 1 -> slice.writeU8(o, (int) value);
            case 2 -> slice.writeU16(o, (int) value);
            case 4 -> slice.writeU32(o, (int) value);
            default -> slice.writeU64(o, value);
        }
    }

    private void check(Field f) {
        if (f.owner() != layout && !f.owner().equals(layout))
            throw new IllegalArgumentException("field " + f.name() + " belongs to " + f.owner() + ", not " + layout);
    }

    @Override
    public String toString() {
        return "GuestStruct[" + layout + " at gpa " + Fmt.hex(slice.gpa()) + "]";
    }

    // ------------------------------------------------------------------------------------------ fields

    /**
     * An integer field of a layout: its byte offset and size (1, 2, 4 or 8). Resolve it once with
     * {@link GuestStruct#field} and keep it in a constant.
     *
     * @param owner the layout it was resolved in; a view of another layout refuses it
     * @param name  the path it was resolved from, for messages
     */
    public record Field(MemoryLayout owner, String name, long offset, int size) {
        public Field {
            Objects.requireNonNull(owner, "owner");
            Objects.requireNonNull(name, "name");
            if (size != 1 && size != 2 && size != 4 && size != 8) throw new IllegalArgumentException("field size " + size);
            if (offset < 0 || offset > owner.byteSize() - size)
                throw new IllegalArgumentException("field " + name + " at " + offset + "+" + size + " is outside " + owner);
        }
    }

    /** The field at the path of group member names {@code names} (nested structs: one name per level). */
    public static Field field(MemoryLayout layout, String... names) {
        MemoryLayout.PathElement[] path = new MemoryLayout.PathElement[names.length];
        for (int k = 0; k < names.length; k++) path[k] = MemoryLayout.PathElement.groupElement(names[k]);
        return resolve(layout, String.join(".", names), path);
    }

    /**
     * The field at {@code path} (group members, fixed sequence indices): an integer value layout
     * (byte, short, char, int, long carriers). Floating-point, boolean and address members are refused: read
     * those from a {@link #read() copy} with the layout's var handle.
     */
    public static Field field(MemoryLayout layout, MemoryLayout.PathElement... path) {
        return resolve(layout, null, path);
    }

    private static Field resolve(MemoryLayout layout, String name, MemoryLayout.PathElement[] path) {
        checkLayout(layout);
        long offset = layout.byteOffset(path); // IllegalArgumentException for a path not in the layout, or an open one
        String n = name != null ? name : "member at offset " + offset;
        // The carrier says what the path selects (select() takes no fixed sequence index; varHandle() does).
        Class<?> carrier = layout.varHandle(path).varType();
        int size;
        if (carrier == byte.class) size = 1;
        else if (carrier == short.class || carrier == char.class) size = 2;
        else if (carrier == int.class) size = 4;
        else if (carrier == long.class) size = 8;
        else throw new IllegalArgumentException("field " + n + " of " + layout + " is a " + carrier + ", not an integer");
        return new Field(layout, n, offset, size);
    }

    // ------------------------------------------------------------------------------------------ layout rules

    /**
     * Refuses a layout guest memory cannot hold as described: empty, with a big-endian member wider than a
     * byte, or with a host address.
     */
    static void checkLayout(MemoryLayout layout) {
        Objects.requireNonNull(layout, "layout");
        if (layout.byteSize() == 0) throw new IllegalArgumentException("empty layout " + layout);
        checkMember(layout, layout);
    }

    private static void checkMember(MemoryLayout root, MemoryLayout m) {
        switch (m) {
            case GroupLayout g -> {
                for (MemoryLayout member : g.memberLayouts()) checkMember(root, member);
            }
            case SequenceLayout s -> checkMember(root, s.elementLayout());
            case AddressLayout a -> throw new IllegalArgumentException("member " + a + " of " + root
                    + " is a host address: guest memory holds guest physical addresses, as integers");
            case ValueLayout v -> {
                if (v.byteSize() > 1 && v.order() == ByteOrder.BIG_ENDIAN) {
                    throw new IllegalArgumentException("member " + v.name().orElse(v.toString()) + " of " + root
                            + " is big-endian: guest memory is little-endian; declare it LITTLE_ENDIAN and convert explicitly");
                }
            }
            default -> { } // padding
        }
    }

    /** A zeroed heap segment of {@code layout}'s size and alignment (long[]-backed up to 8, else off-heap, GC-freed). */
    static MemorySegment allocate(MemoryLayout layout) {
        long size = layout.byteSize();
        if (layout.byteAlignment() <= Long.BYTES && size <= (long) Integer.MAX_VALUE * Long.BYTES - Long.BYTES) {
            return MemorySegment.ofArray(new long[(int) ((size + 7) >>> 3)]).asSlice(0, size);
        }
        return Arena.ofAuto().allocate(layout);
    }
}
