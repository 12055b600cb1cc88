package io.guestmem.access;

import io.guestmem.access.ChunkWalk.Mode;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.IovecArray;

import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.Objects;

/**
 * The host memory of a list of guest buffers, checked: a scatter-gather list (rust-vmm {@code vm-memory}'s
 * {@code get_slices}, QEMU's mapped {@code QEMUSGList}). Made by {@link GuestMemory#buffers}, from one gpa range
 * (which may cross slots) or a list of (gpa, length) buffers such as a virtio descriptor chain: every
 * buffer is walked slot by slot by {@link ChunkWalk}, so one segment per slot a buffer touches and, in
 * GUEST_MEMFD slots, one per page (the access policy answered per page). A hole, a read-only slot for a list
 * checked for writing, or a private page anywhere in the list refuses the whole list with the walk's typed
 * {@link GuestMemoryException} naming that gpa, with 0 bytes done: nothing was transferred.
 *
 * <p>Immutable. Its segments are slices of the slots' views: they die (IllegalStateException) when their slot
 * is deleted or moved, its region closes or the GuestMemory closes. A list checked for reading guest memory
 * only ({@link #writable()} false) hands out read-only segments and buffers, so a transfer into the guest
 * cannot go through it by mistake.
 *
 * <p>Transfers: {@link GuestMemory}'s {@code readv/preadv/writev/pwritev} (one system call when the list
 * fits IOV_MAX; reads mark the VMM's dirty log for the bytes the kernel moved), or {@link #toByteBuffers()}
 * for a Java {@link java.nio.channels.ScatteringByteChannel}/{@link java.nio.channels.GatheringByteChannel},
 * after which {@link GuestMemory#markDirty(GuestBuffers, long)} records what a read stored; or
 * {@link #toIovecs()} for the caller's own native calls.
 */
public final class GuestBuffers implements Iterable<GuestBuffers.Segment> {

    /**
     * One host segment of the list.
     *
     * @param gpa    the guest physical address of its first byte
     * @param slotId the memslot that holds it
     * @param memory its host memory (read-only unless the list was checked for writing)
     */
    public record Segment(long gpa, int slotId, MemorySegment memory) {
        public long length() {
            return memory.byteSize();
        }
    }

    /** ByteBuffers hold at most 2 GiB - 1: {@link #toByteBuffers()} cuts longer segments at this. */
    private static final int MAX_BUFFER = 1 << 30;

    final GuestMemory owner;
    private final SlotTable table; // the one the list was checked on: its dirty logs get the marks
    private final boolean writable;
    private final int count;
    private final long total;
    private final long[] gpa;
    private final int[] slotIndex;  // in table
    private final long[] offset;    // in that slot
    private final MemorySegment[] memory;
    private final int[] slots;      // the distinct slot indices of the segments, ascending: what a transfer holds

    private GuestBuffers(GuestMemory owner, Builder b, boolean writable) {
        this.owner = owner;
        this.table = b.table;
        this.writable = writable;
        this.count = b.n;
        this.total = b.total;
        this.gpa = Arrays.copyOf(b.gpa, b.n);
        this.slotIndex = Arrays.copyOf(b.slot, b.n);
        this.offset = Arrays.copyOf(b.offset, b.n);
        this.memory = Arrays.copyOf(b.memory, b.n);
        this.slots = Arrays.stream(slotIndex).distinct().sorted().toArray();
    }

    /** The table the list was checked on. */
    SlotTable table() {
        return table;
    }

    /** The distinct indices (in {@link #table()}) of the slots the segments lie in, ascending. */
    int[] slotIndices() {
        return slots;
    }

    /**
     * Checks buffers {@code [gpas[k], gpas[k] + lens[k])} for k below {@code n}, all of them before collecting
     * any, then collects their segments. Zero-length buffers give no segment.
     */
    static GuestBuffers of(GuestMemory owner, SlotTable t, PageAccessPolicy policy, long[] gpas, long[] lens, int n,
                           boolean write, String op) {
        Objects.checkFromIndexSize(0, n, gpas.length);
        Objects.checkFromIndexSize(0, n, lens.length);
        Mode mode = write ? Mode.WRITE : Mode.READ;
        for (int k = 0; k < n; k++) {
            if (lens[k] < 0) throw new IllegalArgumentException(op + ": buffer " + k + " at gpa " + Fmt.hex(gpas[k]) + " has length " + lens[k]);
            // the whole list before any of it: a refusal names its gpa with 0 bytes done
            ChunkWalk.check(t, policy, gpas[k], lens[k], mode, op);
        }
        Builder b = new Builder(t, n, write);
        for (int k = 0; k < n; k++) {
            b.start = gpas[k];
            // READ: the check above already refused what WRITE refuses; this walk only cuts the chunks
            // (and marks nothing, as nothing was written yet)
            ChunkWalk.walk(t, policy, gpas[k], lens[k], Mode.READ, op, b, Builder::add);
        }
        return new GuestBuffers(owner, b, write);
    }

    /** The walk's collector. */
    private static final class Builder {
        final SlotTable table;
        final boolean write;
        long start;
        int n;
        long total;
        long[] gpa, offset;
        int[] slot;
        MemorySegment[] memory;

        Builder(SlotTable table, int buffers, boolean write) {
            this.table = table;
            this.write = write;
            int cap = Math.max(buffers, 4);
            gpa = new long[cap];
            offset = new long[cap];
            slot = new int[cap];
            memory = new MemorySegment[cap];
        }

        static long add(Builder b, int slot, MemorySegment view, long o, long length, long done) {
            if (b.n == b.gpa.length) {
                int cap = b.n * 2;
                b.gpa = Arrays.copyOf(b.gpa, cap);
                b.offset = Arrays.copyOf(b.offset, cap);
                b.slot = Arrays.copyOf(b.slot, cap);
                b.memory = Arrays.copyOf(b.memory, cap);
            }
            MemorySegment m = view.asSlice(o, length);
            b.gpa[b.n] = b.start + done;
            b.offset[b.n] = o;
            b.slot[b.n] = slot;
            b.memory[b.n] = b.write ? m : m.asReadOnly();
            b.n++;
            b.total += length;
            return length;
        }
    }

    /** Segments in the list. */
    public int count() {
        return count;
    }

    /** Bytes in the list (the sum of the buffers' lengths). */
    public long totalLength() {
        return total;
    }

    /** True if the list was checked for writing guest memory (a device-writable descriptor): reads from an fd may fill it. */
    public boolean writable() {
        return writable;
    }

    public Segment segment(int i) {
        Objects.checkIndex(i, count);
        return new Segment(gpa[i], table.mapping(slotIndex[i]).slot().id(), memory[i]);
    }

    /** The gpa of segment {@code i}'s first byte. */
    public long gpa(int i) {
        return gpa[Objects.checkIndex(i, count)];
    }

    /** The host memory of segment {@code i}. */
    public MemorySegment memory(int i) {
        return memory[Objects.checkIndex(i, count)];
    }

    @Override
    public Iterator<Segment> iterator() {
        return new Iterator<>() {
            int i;

            @Override
            public boolean hasNext() {
                return i < count;
            }

            @Override
            public Segment next() {
                if (i >= count) throw new NoSuchElementException();
                return segment(i++);
            }
        };
    }

    /**
     * The segments as direct ByteBuffers, in order, for {@link java.nio.channels.ScatteringByteChannel#read(ByteBuffer[])}
     * and {@link java.nio.channels.GatheringByteChannel#write(ByteBuffer[])} (read-only buffers unless
     * {@link #writable()}). A segment over 1 GiB is cut into several buffers. A channel read into them is not
     * dirty-tracked: call {@link GuestMemory#markDirty(GuestBuffers, long)} with its count.
     */
    public ByteBuffer[] toByteBuffers() {
        List<ByteBuffer> out = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            MemorySegment m = memory[i];
            for (long o = 0; o < m.byteSize(); o += MAX_BUFFER) out.add(m.asSlice(o, Math.min(MAX_BUFFER, m.byteSize() - o)).asByteBuffer());
        }
        return out.toArray(new ByteBuffer[0]);
    }

    /**
     * A native {@code struct iovec[]} of the segments, in order, for the caller's own vectored calls
     * ({@link io.guestmem.sys.Uio}); the caller closes it. It holds raw addresses: the kernel writes through it
     * whatever {@link #writable()} says, and nothing marks the dirty log ({@link GuestMemory#markDirty(GuestBuffers, long)}).
     * GuestMemory's {@code readv}/{@code preadv} do both for you.
     */
    public IovecArray toIovecs() {
        IovecArray iov = IovecArray.allocate(count);
        try {
            for (int i = 0; i < count; i++) iov.set(i, memory[i]);
            return iov;
        } catch (RuntimeException e) {
            iov.close();
            throw e;
        }
    }

    /** Marks the pages of the list's first {@code bytes} bytes in the dirty logs of the table it was checked on. */
    void markWritten(long bytes) {
        for (int i = 0; i < count && bytes > 0; i++) {
            long n = Math.min(bytes, memory[i].byteSize());
            if (n > 0) table.markWritten(slotIndex[i], offset[i], n);
            bytes -= n;
        }
    }

    @Override
    public String toString() {
        StringBuilder s = new StringBuilder("GuestBuffers[").append(count).append(" segments, ").append(Fmt.size(total))
                .append(writable ? ", writable" : ", read-only");
        for (int i = 0; i < Math.min(count, 8); i++)
            s.append(i == 0 ? ": " : ", ").append(Fmt.hex(gpa[i])).append('+').append(memory[i].byteSize());
        return s.append(count > 8 ? ", ...]" : "]").toString();
    }
}
