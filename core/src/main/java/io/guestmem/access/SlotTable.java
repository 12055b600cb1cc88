package io.guestmem.access;

import io.guestmem.host.HostSpan;
import io.guestmem.host.RegionView;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.UseAfterClose;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The slot table of a {@link GuestMemory}: what an access needs, immutable once published (one per memslot
 * change or registration). Two parts:
 * <ul>
 *   <li>Per slot, parallel to the indices of {@code set}: base gpa, size, view, dirty log. The checked
 *       (slow) path, the {@link ChunkWalk}, slices and channel I/O use these.</li>
 *   <li>The fast path: guest-physical space from {@code fastBase} cut into equal power-of-two buckets; per
 *       bucket that lies wholly in one plain RAM slot, the offset that turns a gpa into an offset of
 *       {@code all}, one segment from the lowest to the highest hva of those slots (a {@link HostSpan} of this
 *       table's own), or {@link #NONE} for any other bucket: a hole, a slot boundary inside it, GUEST_MEMFD,
 *       unbacked, and for writes READONLY. An access that fits in its bucket is then a subtraction, a shift,
 *       one load from a dense long[] and one access through a segment every access shares: the metadata it
 *       touches is a few cache lines, which keeps a random read at a bare load's cost (measured: per-slot or
 *       per-bucket segment objects, each with its own scope, cost 1.5-10x on 4K pages, from TLB and cache
 *       misses on the objects themselves).</li>
 * </ul>
 * {@code all} spans memory between the slots that is not guest RAM: it is only ever accessed inside a bucket
 * found here, i.e. inside a slot of an open registered region. Its span is closed right after a newer table
 * is published (every change, {@link GuestMemory#close()}), and before a region it covers unmaps (its close
 * hook rebuilds first), so a thread still holding this table gets IllegalStateException, never unmapped
 * memory; the accessors then retry on the new table.
 *
 * <p>{@link GuestMemory#close()} publishes a {@linkplain #closed closed} table: no slot, no bucket, so every
 * access misses the fast path (at no cost to it) and its slow path says the memory is closed instead of
 * "not RAM".
 *
 * <h2>Read-modify-writes and retirement</h2>
 * A plain access that got IllegalStateException from a retired table goes again on the new one. An atomic
 * update may not: the JDK's close handshake may deliver its exception to a thread just after its access
 * completed, and a retried add or compare-and-set would then apply twice. So {@link #retire} waits for the
 * read-modify-writes counted in {@link #rmwInFlight} before it closes the span (see
 * {@code GuestMemory.enterRmw}, the other half of the protocol).
 */
final class SlotTable {
    /** Most buckets the fast path keeps; past it buckets grow, and those a slot boundary cuts go slow. */
    static final int MAX_BUCKETS = 1 << 14;
    /** A bucket the fast path does not serve. */
    static final long NONE = Long.MIN_VALUE;

    final MemslotSet set;
    /** The table a closed GuestMemory publishes: its checked path throws IllegalStateException. */
    final boolean closed;
    final int shift;
    final long pageSize;
    final long[] base;             // first gpa of slot i
    final long[] size;             // bytes of slot i
    final MemorySegment[] any;     // the view, or null when unbacked
    final MemorySegment[] read;    // the view when plain loops may use it (backed, not governed by the policy)
    final boolean[] governed;      // the access policy is asked about every page (GUEST_MEMFD, a stand-in's slot)
    final DirtyBitmap[] dirty;
    final SlotMapping[] mapping;

    final HostSpan span;           // owns all; null when no bucket is served
    final MemorySegment all;       // [lowest, highest hva) of the served slots
    final long fastBase;           // gpa of bucket 0
    final int fastShift;           // log2 of the bucket size
    final long fastMask;           // bucket size - 1
    final long[] readOff;          // offset in all = gpa + readOff[b], or NONE
    final long[] writeOff;         // the same when the bucket may be written, or NONE
    final DirtyBitmap[] fastDirty; // the dirty log of bucket b's slot
    final long[] fastPage;         // page index in that slot of bucket b's first byte

    /** Read-modify-writes under way on this table; {@link #retire} waits for them. */
    final AtomicInteger rmwInFlight = new AtomicInteger();
    volatile boolean retiring;

    SlotTable(MemslotSet set, Map<Integer, SlotMapping> mappings, PageAccessPolicy policy) {
        this(set, mappings, policy, false);
    }

    /** The table of a closed GuestMemory: empty, and every access through it is a use after close. */
    static SlotTable closed(PageGeometry geometry, int addressSpace) {
        return new SlotTable(MemslotSet.empty(geometry, addressSpace), Map.of(), PageAccessPolicy.ALLOW_ALL, true);
    }

    private SlotTable(MemslotSet set, Map<Integer, SlotMapping> mappings, PageAccessPolicy policy, boolean closed) {
        this.set = set;
        this.closed = closed;
        PageGeometry g = set.geometry();
        this.shift = g.shift();
        this.pageSize = g.pageSize();
        int n = set.size();
        base = new long[n];
        size = new long[n];
        any = new MemorySegment[n];
        read = new MemorySegment[n];
        boolean[] writable = new boolean[n]; // not READONLY, not a read-only mapping
        dirty = new DirtyBitmap[n];
        mapping = new SlotMapping[n];
        governed = new boolean[n];
        List<RegionView> plain = new ArrayList<>();
        long align = 0, lo = Long.MAX_VALUE, hi = 0, loHva = Long.MAX_VALUE;
        for (int i = 0; i < n; i++) {
            Memslot s = set.slotAt(i);
            SlotMapping m = mappings.get(s.id());
            mapping[i] = m;
            base[i] = s.baseGfn() << shift;
            size[i] = s.npages() << shift;
            dirty[i] = m.dirty();
            MemorySegment v = m.view() == null ? null : m.view().segment();
            any[i] = v;
            governed[i] = policy.governs(s);
            read[i] = v == null || governed[i] ? null : v;
            writable[i] = read[i] != null && !s.readOnly() && !v.isReadOnly();
            if (read[i] != null) {
                align |= base[i] | size[i];
                lo = Math.min(lo, base[i]);
                hi = Math.max(hi, base[i] + size[i]);
                loHva = Math.min(loHva, v.address());
                plain.add(m.view());
            }
        }
        // The largest bucket that every fast slot's boundaries are aligned to: then each bucket lies wholly
        // inside a slot or wholly outside it. Capped so the tables stay small.
        int k = align == 0 ? shift : Math.min(Long.numberOfTrailingZeros(align), 40);
        if (align != 0) while (((hi - (lo & -(1L << k)) - 1) >>> k) + 1 > MAX_BUCKETS) k++;
        fastShift = k;
        fastMask = (1L << k) - 1;
        fastBase = align == 0 ? 0 : lo & ~fastMask;
        int buckets = align == 0 ? 0 : (int) (((hi - fastBase - 1) >>> k) + 1);
        readOff = new long[buckets];
        writeOff = new long[buckets];
        fastDirty = new DirtyBitmap[buckets];
        fastPage = new long[buckets];
        Arrays.fill(readOff, NONE);
        Arrays.fill(writeOff, NONE);
        boolean served = false;
        for (int b = 0; b < buckets; b++) {
            long start = fastBase + ((long) b << k), end = start + fastMask + 1;
            int i = set.indexOf(start >>> shift);
            if (i < 0 || read[i] == null || base[i] > start || base[i] + size[i] < end) continue;
            // gpa -> hva of the slot's view -> offset in all
            readOff[b] = read[i].address() - base[i] - loHva;
            writeOff[b] = writable[i] ? readOff[b] : NONE;
            fastDirty[b] = dirty[i];
            fastPage[b] = (start - base[i]) >>> shift;
            served = true;
        }
        span = served ? HostSpan.covering(plain) : null;
        all = served ? span.segment() : MemorySegment.NULL;
    }

    /**
     * The fast-path bucket of {@code [gpa, gpa + len)} when the access fits in one served bucket (for a
     * write: one that may be written), else -1. {@code len >= 1}.
     */
    int bucket(long gpa, long len, boolean forWrite) {
        final long r = gpa - fastBase;
        final long b = r >>> fastShift; // a gpa below fastBase gives a huge b
        return b < readOff.length && (r & fastMask) <= fastMask - (len - 1)
                && (forWrite ? writeOff : readOff)[(int) b] != NONE ? (int) b : -1;
    }

    /**
     * Closes the span of {@code all}: threads still holding this table get IllegalStateException. Waits first
     * for the read-modify-writes under way: the JDK's close handshake may deliver its exception to a thread
     * just after its access completed, and a retried add or compare-and-set would then apply twice.
     */
    void retire() {
        retiring = true;
        while (rmwInFlight.get() != 0) Thread.onSpinWait();
        if (span != null) span.close();
    }

    // ------------------------------------------------------------------ the checked path

    /**
     * The index of the slot holding {@code g}, or a NOT_RAM exception naming {@code g} and {@code done}
     * (IllegalStateException on the closed table, which holds no slot: every access of a closed memory ends
     * here, so this check costs a found slot nothing).
     */
    int ramIndex(long g, long done, String op) {
        int i = g < 0 ? -1 : set.indexOf(g >>> shift); // gpas are below 2^63 in every memslot
        if (i < 0) {
            checkOpen(op);
            throw new PartialAccessException(GuestMemoryException.Reason.NOT_RAM, op, g, done, -1, "not RAM");
        }
        return i;
    }

    /** IllegalStateException naming {@code op} when this is the table of a closed GuestMemory. */
    void checkOpen(String op) {
        if (closed) throw UseAfterClose.of("guest memory", op + "()");
    }

    /**
     * The slot index for an access at {@code g} that may go ahead, or a typed exception naming {@code g} and
     * the bytes done. For a slot the policy governs this asks {@code policy} about g's page.
     */
    int checkedIndex(PageAccessPolicy policy, long g, long done, boolean write, String op) {
        int i = ramIndex(g, done, op);
        Memslot s = mapping[i].slot();
        if (any[i] == null) {
            throw new PartialAccessException(GuestMemoryException.Reason.NO_HOST_MEMORY, op, g, done, s.id(),
                    "slot " + s.id() + " (hva " + Fmt.hex(s.userspaceAddr()) + ") has no registered host region");
        }
        if (write && (s.readOnly() || any[i].isReadOnly())) {
            throw new ReadOnlySlotException(op, g, done, s.id(), s.readOnly() ? "slot " + s.id() + " is READONLY"
                    : "slot " + s.id() + " is backed by read-only host memory");
        }
        if (governed[i]) {
            long gfn = g >>> shift;
            if (!policy.mayAccess(s, gfn, write)) throw new PrivateMemoryException(op, g, done, s.id(), gfn);
        }
        return i;
    }

    /** Where a chunk starting at offset {@code o} of slot {@code i} must end: the slot's end, or the page's for GUEST_MEMFD. */
    long chunkEnd(int i, long o) {
        return read[i] != null ? size[i] : Math.min(size[i], (o | (pageSize - 1)) + 1);
    }

    /** The mapping of slot {@code slotId}, or IllegalArgumentException (IllegalStateException on the closed table). */
    SlotMapping mappingOf(int slotId) {
        if (closed) throw UseAfterClose.of("guest memory", "slot " + slotId + "'s dirty log");
        for (SlotMapping m : mapping) if (m.slot().id() == slotId) return m;
        throw new IllegalArgumentException("no slot " + slotId + " in address space " + set.addressSpace());
    }

    // ------------------------------------------------------------------ dirty marks

    /** Marks the pages of {@code len} bytes written at offset {@code o} of slot {@code i}. */
    void markWritten(int i, long o, long len) {
        long first = o >>> shift;
        dirty[i].markRange(first, ((o + len - 1) >>> shift) - first + 1);
    }

    /** Marks the pages of {@code len} bytes written at {@code gpa} through fast bucket {@code b}. */
    void markFast(int b, long gpa, long len) {
        long o = (gpa - fastBase) & fastMask;
        long first = o >>> shift;
        fastDirty[b].markRange(fastPage[b] + first, ((o + len - 1) >>> shift) - first + 1);
    }

    // ------------------------------------------------------------------ handles (volatile and atomic flavours)

    /*
     * The volatile and atomic flavours name where they access with a handle: h >= 0 is fast bucket h (the
     * span, offsets from the gpa), h < 0 is slot ~h through the checked path (its view, offsets within the
     * slot). No allocation either way.
     */

    /**
     * The handle of a naturally aligned {@code size}-byte access at {@code gpa}; throws as the checked path
     * does, and {@link MisalignedAccessException} when {@code gpa} is not a multiple of {@code size}.
     */
    int aligned(PageAccessPolicy policy, long gpa, int size, boolean write, String op) {
        if ((gpa & (size - 1)) != 0) throw misaligned(gpa, size, op);
        int b = bucket(gpa, size, write);
        if (b >= 0) return b;
        return ~checkedIndex(policy, gpa, 0, write, op);
    }

    /** The refusal of a misaligned access, naming the slot holding {@code gpa} when there is one. */
    MisalignedAccessException misaligned(long gpa, int size, String op) {
        checkOpen(op);
        int i = gpa < 0 ? -1 : set.indexOf(gpa >>> shift);
        return new MisalignedAccessException(op, gpa, size, i < 0 ? -1 : mapping[i].slot().id());
    }

    MemorySegment segment(int h) {
        return h >= 0 ? all : any[~h];
    }

    long offset(int h, long gpa) {
        return h >= 0 ? gpa + readOff[h] : gpa - base[~h];
    }

    /** Marks the page of an aligned access (which never crosses a page). */
    void mark(int h, long gpa) {
        if (h >= 0) fastDirty[h].mark(fastPage[h] + (((gpa - fastBase) & fastMask) >>> shift));
        else dirty[~h].mark((gpa - base[~h]) >>> shift);
    }
}
