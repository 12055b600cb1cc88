package io.guestmem.access;

import io.guestmem.host.HostRegion;
import io.guestmem.host.HostSpan;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.UseAfterClose;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntFunction;

/**
 * The slot table of a {@link GuestMemory}: what an access needs, immutable once published (one per memslot
 * change or registration). Two parts:
 * <ul>
 *   <li>Per slot, parallel to the indices of {@code set}: base gpa, size, view, dirty log. The checked
 *       (slow) path, the {@link ChunkWalk}, slices and channel I/O use these.</li>
 *   <li>The fast path: guest-physical space from {@code fastBase} cut into equal power-of-two buckets; per
 *       bucket that lies wholly in one plain RAM slot, the offset that turns a gpa into an offset of
 *       {@code all}, one segment from the lowest to the highest hva of the regions backing those slots (a
 *       {@link HostSpan}), or {@link #NONE} for any other bucket: a hole, a slot boundary inside it, GUEST_MEMFD,
 *       unbacked, and for writes READONLY. An access that fits in its bucket is then a subtraction, a shift,
 *       one load from a dense long[] and one access through a segment every access shares: the metadata it
 *       touches is a few cache lines, which keeps a random read at a bare load's cost (measured: per-slot or
 *       per-bucket segment objects, each with its own scope, cost 1.5-10x on 4K pages, from TLB and cache
 *       misses on the objects themselves).</li>
 * </ul>
 * {@code all} spans memory between the slots that is not guest RAM: it is only ever accessed inside a bucket
 * found here, i.e. inside a slot of an open registered region. Its span is closed right after a newer table
 * is published (every change but a create the span already covers, which takes nothing away;
 * {@link GuestMemory#close()}), and before a region it covers unmaps (its close
 * hook rebuilds first), so a thread still holding this table gets IllegalStateException, never unmapped
 * memory; the accessors then retry on the new table.
 *
 * <h2>Following one memslot change in O(chunk), not O(slots)</h2>
 * Both parts are copy-on-write and chunked: the per-slot part is indexed by slot id (the index
 * {@link MemslotSet#indexOf} returns) in chunks of 256, the bucket arrays in chunks of 1024 buckets, so
 * {@link #changed} copies the top-level arrays, one chunk of slots and the bucket chunks the changed slot
 * covers, and shares the rest with this table. The bucket geometry is kept across such changes, with room
 * to grow: a full build allocates up to twice the buckets its slots need (at most {@link #MAX_BUCKETS}), and
 * {@code all} only ever grows (it covers the whole regions of the served slots: a create inside it keeps it,
 * with no handshake; any other change renews it, extended to a new slot's region, so that this table's can
 * be closed). A change is built whole (O(slots)) only when it does not fit: a slot outside the buckets or below the span,
 * a slot aligned more finely than the buckets while they are not capped, a table without buckets (no plain
 * slot at its whole build), or the slot count fallen to a quarter of the last full build's; every such build at least doubles
 * what fits or halves what is wasted, so the cost is amortized over the changes that needed it.
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
    /**
     * Most buckets the fast path keeps; past it buckets grow, and those a slot boundary cuts go slow. 2^18 lets
     * KVM's 32764 slots with gaps between them (the benches' 2 MiB slots at a 3 MiB stride: 98,000 buckets of
     * 1 MiB) keep a bucket per MiB; untouched chunks are shared, so a table costs what its slots cover.
     */
    static final int MAX_BUCKETS = 1 << 18;
    /** A bucket the fast path does not serve. */
    static final long NONE = Long.MIN_VALUE;

    private static final int E_BITS = 8, E_CHUNK = 1 << E_BITS, E_MASK = E_CHUNK - 1;
    private static final int F_BITS = 10, F_CHUNK = 1 << F_BITS, F_MASK = F_CHUNK - 1;
    // Chunks of unserved buckets, shared by every table: never written (a change copies a chunk first).
    private static final long[] NONE_CHUNK = new long[F_CHUNK];
    private static final Entry[] NULL_CHUNK = new Entry[F_CHUNK];
    static {
        Arrays.fill(NONE_CHUNK, NONE);
    }

    /** What the checked (slow) path needs of one slot. Immutable. */
    static final class Entry {
        final SlotMapping mapping;
        final long base;             // first gpa
        final long size;             // bytes
        final MemorySegment any;     // the view, or null when unbacked
        final MemorySegment read;    // the view when plain loops may use it (backed, not governed by the policy)
        final boolean governed;      // the access policy is asked about every page (GUEST_MEMFD, a stand-in's slot)
        final boolean writable;      // read != null, not READONLY, not a read-only mapping
        final DirtyBitmap dirty;
        final long[] words;          // dirty's words when it has one chunk only (DirtyBitmap.oneChunk), else null

        Entry(SlotMapping m, int shift, PageAccessPolicy policy) {
            Memslot s = m.slot();
            mapping = m;
            base = s.baseGfn() << shift;
            size = s.npages() << shift;
            dirty = m.dirty();
            words = dirty.oneChunk();
            any = m.view() == null ? null : m.view().segment();
            governed = policy.governs(s);
            read = any == null || governed ? null : any;
            writable = read != null && !s.readOnly() && !any.isReadOnly();
        }
    }

    final MemslotSet set;
    /** The table a closed GuestMemory publishes: its checked path throws IllegalStateException. */
    final boolean closed;
    final int shift;
    final long pageSize;
    private final Entry[][] entries;       // by slot id: entries[id >>> E_BITS][id & E_MASK]

    final HostSpan span;           // owns all; null when no bucket is served
    final MemorySegment all;       // [lowest, highest hva) of the served slots (grow-only across changes)
    final long fastBase;           // gpa of bucket 0
    final int fastShift;           // log2 of the bucket size
    final long fastMask;           // bucket size - 1
    final int buckets;             // buckets in the arrays below
    private final long[][] readOffs;        // offset in all = gpa + readOff(b), or NONE
    private final long[][] writeOffs;       // the same when the bucket may be written, or NONE
    private final Entry[][] fastEntries;    // the slot of a served bucket (its dirty log), else null
    // Chunk 0 of each of those: after the fence of a dirty mark every load starts again, and an access
    // to the first F_CHUNK buckets then waits for one load fewer
    private final long[] readHead, writeHead;
    private final Entry[] entryHead;
    private final boolean fastCapped;       // fastShift was raised past the slots' alignment to stay under MAX_BUCKETS
    private final int builtFor;             // slots at the last full build

    /** Read-modify-writes under way on this table; {@link #retire} waits for them. */
    final AtomicInteger rmwInFlight = new AtomicInteger();
    volatile boolean retiring;

    /** A table built whole: {@code mappings} gives the mapping of every slot id of {@code set}. */
    SlotTable(MemslotSet set, IntFunction<SlotMapping> mappings, PageAccessPolicy policy) {
        this(set, mappings, policy, false);
    }

    /** The table of a closed GuestMemory: empty, and every access through it is a use after close. */
    static SlotTable closed(PageGeometry geometry, int addressSpace) {
        return new SlotTable(MemslotSet.empty(geometry, addressSpace), id -> null, PageAccessPolicy.ALLOW_ALL, true);
    }

    private SlotTable(MemslotSet set, IntFunction<SlotMapping> mappings, PageAccessPolicy policy, boolean closed) {
        this.set = set;
        this.closed = closed;
        PageGeometry g = set.geometry();
        this.shift = g.shift();
        this.pageSize = g.pageSize();
        int maxId = -1;
        for (Memslot s : set.slots()) maxId = Math.max(maxId, s.id());
        Entry[][] es = new Entry[(maxId >>> E_BITS) + 1][];
        Set<HostRegion> plain = Collections.newSetFromMap(new IdentityHashMap<>());
        List<Entry> served = new ArrayList<>();
        long align = 0, lo = Long.MAX_VALUE, hi = 0, loHva = Long.MAX_VALUE;
        for (Memslot s : set.slots()) {
            Entry e = new Entry(mappings.apply(s.id()), shift, policy);
            if (es[s.id() >>> E_BITS] == null) es[s.id() >>> E_BITS] = new Entry[E_CHUNK];
            es[s.id() >>> E_BITS][s.id() & E_MASK] = e;
            if (e.read != null) {
                align |= e.base | e.size;
                lo = Math.min(lo, e.base);
                hi = Math.max(hi, e.base + e.size);
                if (plain.add(e.mapping.region())) loHva = Math.min(loHva, e.mapping.region().address());
                served.add(e);
            }
        }
        entries = es;
        builtFor = set.size();
        // The largest bucket that every fast slot's boundaries are aligned to: then each bucket lies wholly
        // inside a slot or wholly outside it. Capped so the tables stay small.
        int k0 = align == 0 ? shift : Math.min(Long.numberOfTrailingZeros(align), 40), k = k0;
        if (align != 0) while (((hi - (lo & -(1L << k)) - 1) >>> k) + 1 > MAX_BUCKETS) k++;
        fastShift = k;
        fastCapped = k > k0;
        fastMask = (1L << k) - 1;
        fastBase = align == 0 ? 0 : lo & ~fastMask;
        long needed = align == 0 ? 0 : ((hi - fastBase - 1) >>> k) + 1;
        buckets = (int) Math.min(MAX_BUCKETS, 2 * needed); // room for slots created above these
        int chunks = Math.max(1, (buckets + F_MASK) >>> F_BITS); // at least one, so chunk 0 is the head
        readOffs = filled(new long[chunks][], NONE_CHUNK);
        writeOffs = filled(new long[chunks][], NONE_CHUNK);
        fastEntries = new Entry[chunks][];
        Arrays.fill(fastEntries, NULL_CHUNK);
        boolean[] copied = new boolean[chunks];
        boolean any = false;
        for (Entry e : served) any |= serve(e, loHva, copied);
        span = any ? HostSpan.covering(plain) : null;
        all = any ? span.segment() : MemorySegment.NULL;
        readHead = readOffs[0];
        writeHead = writeOffs[0];
        entryHead = fastEntries[0];
    }

    private static long[][] filled(long[][] a, long[] chunk) {
        Arrays.fill(a, chunk);
        return a;
    }

    /** A successor of {@code prev} that differs in slot {@code id} only ({@code old} before, {@code now} after). */
    private SlotTable(SlotTable prev, MemslotSet set, int id, Entry old, Entry now) {
        this.set = set;
        this.closed = false;
        this.shift = prev.shift;
        this.pageSize = prev.pageSize;
        Entry[][] es = Arrays.copyOf(prev.entries, Math.max(prev.entries.length, (id >>> E_BITS) + 1));
        Entry[] c = es[id >>> E_BITS] == null ? new Entry[E_CHUNK] : es[id >>> E_BITS].clone();
        c[id & E_MASK] = now;
        es[id >>> E_BITS] = c;
        entries = es;
        builtFor = prev.builtFor;
        fastBase = prev.fastBase;
        fastShift = prev.fastShift;
        fastMask = prev.fastMask;
        fastCapped = prev.fastCapped;
        buckets = prev.buckets;
        readOffs = prev.readOffs.clone();
        writeOffs = prev.writeOffs.clone();
        fastEntries = prev.fastEntries.clone();
        boolean[] copied = new boolean[readOffs.length];
        if (old != null && old.read != null) unserve(old, copied);
        boolean serves = now != null && now.read != null && wholeBuckets(now);
        // A create inside the span keeps it: the previous table reaches nothing that went away, so it needs no
        // closing (retire(successor) then only drains its read-modify-writes). Any other change renews the span
        // (grow-only) so that the previous table's can be closed; the first slot served makes one over its region.
        HostRegion r = serves ? now.mapping.region() : null;
        if (prev.span == null) span = r == null ? null : HostSpan.covering(List.of(r));
        else if (old == null && (r == null || prev.span.covers(r))) span = prev.span;
        else span = prev.span.renewed(r);
        all = span == null ? MemorySegment.NULL : span.segment();
        if (serves) serve(now, span.address(), copied);
        readHead = readOffs[0];
        writeHead = writeOffs[0];
        entryHead = fastEntries[0];
    }

    /**
     * This table after the change of slot {@code id} to {@code mapping} (null: deleted) that made {@code next}
     * from this table's set: in O(chunk + the buckets the slot covers) when the change fits this table's
     * buckets and span, else built whole.
     */
    SlotTable changed(MemslotSet next, int id, SlotMapping mapping, PageAccessPolicy policy) {
        Entry old = entryOrNull(id), now = mapping == null ? null : new Entry(mapping, shift, policy);
        boolean whole = next.isEmpty() || next.size() < builtFor / 4;
        if (!whole && now != null && now.read != null) {
            whole = buckets == 0 || (span != null && now.mapping.region().address() < span.address())
                    || now.base < fastBase || now.base + now.size - fastBase > (long) buckets << fastShift
                    || (!fastCapped && Long.numberOfTrailingZeros(now.base | now.size) < fastShift);
        }
        if (whole) return new SlotTable(next, j -> j == id ? mapping : mappingOrNull(j), policy, false);
        return new SlotTable(this, next, id, old, now);
    }

    /** True if some bucket lies wholly inside {@code e} (which lies inside the buckets). */
    private boolean wholeBuckets(Entry e) {
        return (e.base - fastBase + fastMask) >>> fastShift < (e.base + e.size - fastBase) >>> fastShift;
    }

    /** Writes the buckets wholly inside {@code e} (a slot the fast path may serve); true if there was one. */
    private boolean serve(Entry e, long loHva, boolean[] copied) {
        long first = (e.base - fastBase + fastMask) >>> fastShift, end = (e.base + e.size - fastBase) >>> fastShift;
        long off = e.read.address() - e.base - loHva; // gpa -> hva of the slot's view -> offset in all
        for (long b = first; b < end; b++) {
            int c = own((int) b, copied), i = (int) b & F_MASK;
            readOffs[c][i] = off;
            writeOffs[c][i] = e.writable ? off : NONE;
            fastEntries[c][i] = e;
        }
        return first < end;
    }

    /** Unserves the buckets wholly inside {@code e} (no other slot can have served them: slots do not overlap). */
    private void unserve(Entry e, boolean[] copied) {
        if (e.base < fastBase) return; // never served: below the buckets
        long first = (e.base - fastBase + fastMask) >>> fastShift;
        long end = Math.min(buckets, (e.base + e.size - fastBase) >>> fastShift);
        for (long b = first; b < end; b++) {
            int c = own((int) b, copied), i = (int) b & F_MASK;
            readOffs[c][i] = NONE;
            writeOffs[c][i] = NONE;
            fastEntries[c][i] = null;
        }
    }

    /** The chunk of bucket {@code b}, copied first if this table still shares it. */
    private int own(int b, boolean[] copied) {
        int c = b >>> F_BITS;
        if (!copied[c]) {
            readOffs[c] = readOffs[c].clone();
            writeOffs[c] = writeOffs[c].clone();
            fastEntries[c] = fastEntries[c].clone();
            copied[c] = true;
        }
        return c;
    }

    // ------------------------------------------------------------------ per slot (index = slot id)

    Entry entry(int i) {
        return entries[i >>> E_BITS][i & E_MASK];
    }

    private Entry entryOrNull(int id) {
        if (id < 0 || (id >>> E_BITS) >= entries.length) return null;
        Entry[] c = entries[id >>> E_BITS];
        return c == null ? null : c[id & E_MASK];
    }

    /** The mapping of slot {@code id}, or null when the table has no such slot. */
    SlotMapping mappingOrNull(int id) {
        Entry e = entryOrNull(id);
        return e == null ? null : e.mapping;
    }

    long base(int i) {
        return entry(i).base;
    }

    long size(int i) {
        return entry(i).size;
    }

    MemorySegment any(int i) {
        return entry(i).any;
    }

    MemorySegment read(int i) {
        return entry(i).read;
    }

    DirtyBitmap dirty(int i) {
        return entry(i).dirty;
    }

    SlotMapping mapping(int i) {
        return entry(i).mapping;
    }

    /** The mappings of every slot, in gpa order. */
    Iterable<SlotMapping> mappings() {
        return () -> new Iterator<>() {
            final Iterator<Memslot> it = set.slots().iterator();

            @Override
            public boolean hasNext() {
                return it.hasNext();
            }

            @Override
            public SlotMapping next() {
                return mapping(it.next().id());
            }
        };
    }

    // ------------------------------------------------------------------ the fast path

    /** The offset in {@link #all} of gpa 0 in bucket {@code b}'s slot, or NONE. */
    long readOff(int b) {
        return at(readHead, readOffs, b);
    }

    /** Bucket {@code b}'s entry of a bucket array: chunk 0 from its head, the rest through the chunks. */
    private static long at(long[] head, long[][] chunks, int b) {
        return b < F_CHUNK ? head[b] : chunks[b >>> F_BITS][b & F_MASK];
    }

    /** {@link #at(long[], long[][], int)} of the entry array. */
    private static Entry at(Entry[] head, Entry[][] chunks, int b) {
        return b < F_CHUNK ? head[b] : chunks[b >>> F_BITS][b & F_MASK];
    }

    /** {@link #readOff} when the bucket may be written, else NONE. */
    long writeOff(int b) {
        return at(writeHead, writeOffs, b);
    }

    /**
     * The fast-path bucket of {@code [gpa, gpa + len)} when the access fits in one served bucket (for a
     * write: one that may be written), else -1. {@code len >= 1}.
     */
    int bucket(long gpa, long len, boolean forWrite) {
        final long r = gpa - fastBase;
        final long b = r >>> fastShift; // a gpa below fastBase gives a huge b
        return b < buckets && (r & fastMask) <= fastMask - (len - 1)
                && (forWrite ? writeOff((int) b) : readOff((int) b)) != NONE ? (int) b : -1;
    }

    /**
     * {@link #readOff} (for a write {@link #writeOff}) of the bucket of {@code [gpa, gpa + len)} when the access
     * fits in one served bucket, else NONE: the plain accessors' fast path, one table load per access (the
     * offset is the answer, so no second lookup follows). {@code len >= 1}.
     */
    long fastOff(long gpa, long len, boolean forWrite) {
        final long r = gpa - fastBase;
        final long b = r >>> fastShift;
        if (b >= buckets || (r & fastMask) > fastMask - (len - 1)) return NONE;
        return forWrite ? at(writeHead, writeOffs, (int) b) : at(readHead, readOffs, (int) b);
    }

    /**
     * Closes the span of {@code all} unless {@code successor} (the table published in this one's place; null
     * for none) kept it: threads still holding this table get IllegalStateException. Waits first for the
     * read-modify-writes under way, and makes later ones go to the successor: the JDK's close handshake may
     * deliver its exception to a thread just after its access completed, and a retried add or compare-and-set
     * would then apply twice. A kept span is closed by the retirement of the last table holding it, after
     * this one's read-modify-writes drained here.
     */
    void retire(SlotTable successor) {
        retiring = true;
        while (rmwInFlight.get() != 0) Thread.onSpinWait();
        if (span != null && (successor == null || successor.span != span)) span.close();
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
        Entry e = entry(i);
        Memslot s = e.mapping.slot();
        if (e.any == null) {
            throw new PartialAccessException(GuestMemoryException.Reason.NO_HOST_MEMORY, op, g, done, s.id(),
                    "slot " + s.id() + " (hva " + Fmt.hex(s.userspaceAddr()) + ") has no registered host region");
        }
        if (write && (s.readOnly() || e.any.isReadOnly())) {
            throw new ReadOnlySlotException(op, g, done, s.id(), s.readOnly() ? "slot " + s.id() + " is READONLY"
                    : "slot " + s.id() + " is backed by read-only host memory");
        }
        if (e.governed) {
            long gfn = g >>> shift;
            if (!policy.mayAccess(s, gfn, write)) throw new PrivateMemoryException(op, g, done, s.id(), gfn);
        }
        return i;
    }

    /** Where a chunk starting at offset {@code o} of slot {@code i} must end: the slot's end, or the page's for GUEST_MEMFD. */
    long chunkEnd(int i, long o) {
        Entry e = entry(i);
        return e.read != null ? e.size : Math.min(e.size, (o | (pageSize - 1)) + 1);
    }

    /** The mapping of slot {@code slotId}, or IllegalArgumentException (IllegalStateException on the closed table). */
    SlotMapping mappingOf(int slotId) {
        if (closed) throw UseAfterClose.of("guest memory", "slot " + slotId + "'s dirty log");
        SlotMapping m = mappingOrNull(slotId);
        if (m != null) return m;
        throw new IllegalArgumentException("no slot " + slotId + " in address space " + set.addressSpace());
    }

    // ------------------------------------------------------------------ dirty marks

    /** Marks the pages of {@code len} bytes written at offset {@code o} of slot {@code i}. */
    void markWritten(int i, long o, long len) {
        long first = o >>> shift;
        entry(i).dirty.markRange(first, ((o + len - 1) >>> shift) - first + 1);
    }

    /** {@link #fastOff} of a naturally aligned {@code size}-byte access; NONE when {@code gpa} is misaligned. */
    long fastOffAligned(long gpa, int size, boolean forWrite) {
        return (gpa & (size - 1)) == 0 ? fastOff(gpa, size, forWrite) : NONE;
    }

    /** Marks the pages of {@code len} bytes written at {@code gpa} through the fast path ({@link #fastOff}). */
    void markFast(long gpa, long len) {
        int b = (int) ((gpa - fastBase) >>> fastShift);
        Entry e = at(entryHead, fastEntries, b);
        long first = (gpa - e.base) >>> shift, last = (gpa + len - 1 - e.base) >>> shift;
        if (!DirtyBitmap.alreadyMarked(e.words, first, last)) e.dirty.markRange(first, last - first + 1);
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
        return new MisalignedAccessException(op, gpa, size, i < 0 ? -1 : i); // the index is the slot id
    }

    MemorySegment segment(int h) {
        return h >= 0 ? all : entry(~h).any;
    }

    long offset(int h, long gpa) {
        return h >= 0 ? gpa + readOff(h) : gpa - entry(~h).base;
    }

    /** Marks the page of an aligned access (which never crosses a page). */
    void mark(int h, long gpa) {
        if (h >= 0) {
            markFast(gpa, 1);
        } else {
            Entry e = entry(~h);
            e.dirty.mark((gpa - e.base) >>> shift);
        }
    }
}
