package io.guestmem.virtio;

import io.guestmem.access.GuestMemory;
import io.guestmem.access.GuestStruct;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;

/**
 * One descriptor of a split virtqueue's descriptor table, {@code struct virtq_desc} of the virtio 1.x
 * specification (2.7.5 "The Virtqueue Descriptor Table"): {@code le64 addr; le32 len; le16 flags; le16 next;},
 * 16 bytes, the table 16-byte aligned. {@link #LAYOUT} is the structure as an FFM layout for
 * {@link GuestMemory#struct}, {@link GuestMemory#readStruct} and {@link GuestMemory#writeStruct}; the field
 * constants address it in a live {@link GuestStruct} view. The record holds one descriptor's values: u32
 * {@code len} as an int's bits, u16 {@code flags} and {@code next} zero-extended.
 *
 * @param addr  guest physical address of the buffer
 * @param len   its length in bytes (u32 bits: {@link Integer#toUnsignedLong})
 * @param flags {@link #F_NEXT}, {@link #F_WRITE}, {@link #F_INDIRECT}
 * @param next  the index of the next descriptor of the chain when {@link #F_NEXT} is set
 */
public record VirtqDescriptor(long addr, int len, int flags, int next) {

    /** {@code struct virtq_desc}: little-endian as virtio 1.x specifies, naturally aligned members. */
    public static final StructLayout LAYOUT = MemoryLayout.structLayout(
            ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN).withName("addr"),
            ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN).withName("len"),
            ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).withName("flags"),
            ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).withName("next")).withName("virtq_desc");

    /** Bytes per descriptor; the table is an array of them. */
    public static final long SIZE = 16;

    /** The buffer continues in descriptor {@code next}. */
    public static final int F_NEXT = 1;
    /** The buffer is device write-only (otherwise device read-only). */
    public static final int F_WRITE = 2;
    /** The buffer holds a table of indirect descriptors. */
    public static final int F_INDIRECT = 4;

    /** Fields of {@link #LAYOUT} for a live {@link GuestStruct} view. */
    public static final GuestStruct.Field ADDR = GuestStruct.field(LAYOUT, "addr"),
            LEN = GuestStruct.field(LAYOUT, "len"),
            FLAGS = GuestStruct.field(LAYOUT, "flags"),
            NEXT = GuestStruct.field(LAYOUT, "next");

    // The layout's own var handles, for the copies readStruct returns and writeStruct takes.
    private static final VarHandle ADDR_VH = LAYOUT.varHandle(groupElement("addr"));
    private static final VarHandle LEN_VH = LAYOUT.varHandle(groupElement("len"));
    private static final VarHandle FLAGS_VH = LAYOUT.varHandle(groupElement("flags"));
    private static final VarHandle NEXT_VH = LAYOUT.varHandle(groupElement("next"));

    public VirtqDescriptor {
        if ((flags & ~0xffff) != 0) throw new IllegalArgumentException("flags " + flags + " is not a u16");
        if ((next & ~0xffff) != 0) throw new IllegalArgumentException("next " + next + " is not a u16");
    }

    /** The gpa of descriptor {@code index} of the table at {@code tableGpa}. */
    public static long gpaOf(long tableGpa, int index) {
        if (index < 0 || index > 0xffff) throw new IllegalArgumentException("descriptor index " + index);
        return tableGpa + SIZE * index;
    }

    /** The descriptor at {@code gpa}, read as one structure (it must lie in one slot). */
    public static VirtqDescriptor read(GuestMemory mem, long gpa) {
        return of(mem.readStruct(gpa, LAYOUT));
    }

    /** The descriptor held by {@code copy}, a segment of {@link #LAYOUT} (as {@link GuestMemory#readStruct} returns). */
    public static VirtqDescriptor of(MemorySegment copy) {
        return new VirtqDescriptor((long) ADDR_VH.get(copy, 0L), (int) LEN_VH.get(copy, 0L),
                Short.toUnsignedInt((short) FLAGS_VH.get(copy, 0L)), Short.toUnsignedInt((short) NEXT_VH.get(copy, 0L)));
    }

    /** Writes this descriptor at {@code gpa} as one structure (all or nothing, dirty-tracked). */
    public void write(GuestMemory mem, long gpa) {
        MemorySegment s = MemorySegment.ofArray(new long[2]);
        ADDR_VH.set(s, 0L, addr);
        LEN_VH.set(s, 0L, len);
        FLAGS_VH.set(s, 0L, (short) flags);
        NEXT_VH.set(s, 0L, (short) next);
        mem.writeStruct(gpa, LAYOUT, s);
    }

    public boolean hasNext() {
        return (flags & F_NEXT) != 0;
    }

    public boolean deviceWritable() {
        return (flags & F_WRITE) != 0;
    }

    public boolean indirect() {
        return (flags & F_INDIRECT) != 0;
    }
}
