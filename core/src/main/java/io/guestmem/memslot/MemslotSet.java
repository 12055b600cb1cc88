package io.guestmem.memslot;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Comparator;
import java.util.List;

/**
 * An immutable snapshot of one address space's memslots, KVM's {@code struct kvm_memslots}: what a reader
 * saw when it started. {@link Memslots} publishes a new set for every change; a reader holding an older set
 * keeps seeing exactly that set, and compares {@link #generation()} to learn that something changed.
 *
 * <h2>The lookup path</h2>
 * {@link #indexOf(long)}, {@link #gfnToHva(long)} and {@link #gpaToHva(long)} allocate nothing and take no
 * lock. A directory indexed by {@code (gfn - firstGfn) >> k} (k chosen so that the directory has about 4
 * entries per slot) answers a bucket that lies wholly inside one slot (or one gap) with one load: with slots
 * aligned to the bucket size, a VMM's usual layout, that is every lookup, and it touches one cache line
 * besides the set itself. In a bucket where slots or gaps meet, the last slot found is tried first (KVM's
 * {@code last_used_slot}: a plain field, written by whichever reader searched last; a racy write only costs a
 * later reader one extra search, it can never return a wrong slot since every cached index is a valid index
 * of this set), then the bucket's first candidate slot and a short forward scan over a compact array of end
 * gfns (or a branch-free binary search, when some bucket holds many slot ends). For layouts where slots
 * and gaps are not wildly smaller than the average slot, this is two or three dependent loads whatever the
 * slot count.
 *
 * <p>Errors are values: {@link #BAD_HVA} (KVM's {@code KVM_HVA_ERR_BAD}: no slot) and {@link #RO_BAD_HVA}
 * ({@code KVM_HVA_ERR_RO_BAD}: a write to a read-only slot). Both are negative, and no user-space address is.
 */
public final class MemslotSet {

    /** No slot holds the gfn ({@code KVM_HVA_ERR_BAD}). */
    public static final long BAD_HVA = -1L;
    /** A write lookup hit a READONLY slot ({@code KVM_HVA_ERR_RO_BAD}). */
    public static final long RO_BAD_HVA = -2L;

    // One row per slot, in base-gfn order: the fields the hot path needs, next to each other.
    private static final int STRIDE = 4, BASE = 0, NPAGES = 1, HVA_DELTA = 2, FLAGS = 3;
    // Scan a bucket linearly while it holds at most this many candidate slots, else binary-search it.
    private static final int SCAN_LIMIT = 4;
    // whole[] values besides a slot index: no gfn of the bucket is in a slot / the bucket needs the scan.
    private static final int GAP_BUCKET = -1, MIXED_BUCKET = -2;
    // wholeDelta[] for a gap or mixed bucket (a slot whose delta is exactly this takes the indexOf path).
    private static final long NO_DELTA = Long.MIN_VALUE;

    private final PageGeometry geometry;
    private final int addressSpace;
    private final long generation;
    private final Memslot[] slots;      // sorted by baseGfn
    private final long[] table;         // STRIDE longs per slot (one zero row when empty)
    private final long[] ends;          // endGfn per slot, ascending (slots never overlap)
    private final int[] dir;            // dir[b] = first slot whose end > dirBase + (b << dirShift); length buckets+1
    private final int[] whole;          // whole[b] = the slot holding all of bucket b, GAP_BUCKET, or MIXED_BUCKET
    private final long[] wholeDelta;    // hva - (gfn << shift) of the slot holding all 2^dirShift gfns of bucket b, or NO_DELTA
    private final int shift;            // the geometry's page shift, kept here: one load less per lookup
    private final long dirBase;         // first gfn of the first slot
    private final long dirSpan;         // gfns from dirBase to the end of the last slot (0 when empty)
    private final int dirShift;
    private final boolean dirScan;
    private final int[] idsSorted;      // slot ids ascending
    private final int[] indexOfId;      // parallel to idsSorted
    private final long totalPages;

    /** Racy last-used cache, as KVM's {@code slots->last_used_slot}; always a valid row index. */
    private int lastUsed;

    /**
     * A set of the given slots (any order). They must all belong to {@code addressSpace}, have distinct ids
     * and not overlap; {@link Memslots} guarantees that, other callers (tests) get an
     * IllegalArgumentException.
     */
    public static MemslotSet of(PageGeometry geometry, int addressSpace, long generation, Collection<Memslot> slots) {
        return new MemslotSet(geometry, addressSpace, generation, slots.toArray(new Memslot[0]));
    }

    /** An empty set. */
    public static MemslotSet empty(PageGeometry geometry, int addressSpace) {
        return new MemslotSet(geometry, addressSpace, 0, new Memslot[0]);
    }

    private MemslotSet(PageGeometry geometry, int addressSpace, long generation, Memslot[] unsorted) {
        this.geometry = geometry;
        this.shift = geometry.shift();
        this.addressSpace = addressSpace;
        this.generation = generation;
        Memslot[] s = unsorted.clone();
        Arrays.sort(s, Comparator.comparingLong(Memslot::baseGfn));
        int n = s.length;
        long total = 0;
        for (int i = 0; i < n; i++) {
            Memslot m = s[i];
            if (m.addressSpace() != addressSpace) {
                throw new IllegalArgumentException("slot " + m.id() + " is in address space " + m.addressSpace()
                        + ", not " + addressSpace);
            }
            if (m.npages() <= 0 || m.baseGfn() < 0) throw new IllegalArgumentException("empty or negative slot " + m);
            if (i > 0 && s[i - 1].endGfn() > m.baseGfn()) {
                throw new IllegalArgumentException("slots " + s[i - 1].id() + " and " + m.id() + " overlap");
            }
            total += m.npages();
        }
        this.slots = s;
        this.totalPages = total;

        table = new long[Math.max(1, n) * STRIDE];
        ends = new long[n];
        for (int i = 0; i < n; i++) {
            Memslot m = s[i];
            int o = i * STRIDE;
            table[o + BASE] = m.baseGfn();
            table[o + NPAGES] = m.npages();
            table[o + HVA_DELTA] = m.userspaceAddr() - (m.baseGfn() << geometry.shift());
            table[o + FLAGS] = m.flags();
            ends[i] = m.endGfn();
        }

        // ids: sorted for id_to_memslot
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) order[i] = i;
        Arrays.sort(order, Comparator.comparingInt(i -> s[i].id()));
        idsSorted = new int[n];
        indexOfId = new int[n];
        for (int i = 0; i < n; i++) {
            idsSorted[i] = s[order[i]].id();
            indexOfId[i] = order[i];
            if (i > 0 && idsSorted[i] == idsSorted[i - 1]) {
                throw new IllegalArgumentException("duplicate slot id " + idsSorted[i]);
            }
        }

        // The directory.
        if (n == 0) {
            dirBase = 0;
            dirSpan = 0;
            dirShift = 0;
            dir = new int[] {0};
            whole = new int[] {GAP_BUCKET};
            wholeDelta = new long[] {NO_DELTA};
            dirScan = true;
        } else {
            dirBase = s[0].baseGfn();
            dirSpan = ends[n - 1] - dirBase;
            long target = Math.max(64, 4L * n);
            int k = 0;
            while (((dirSpan - 1) >>> k) + 1 > target) k++;
            dirShift = k;
            int buckets = (int) (((dirSpan - 1) >>> k) + 1);
            dir = new int[buckets + 1];
            int i = 0, widest = 0;
            for (int b = 0; b <= buckets; b++) {
                long start = dirBase + ((long) b << k);
                while (i < n && ends[i] <= start) i++;
                dir[b] = i;
                if (b > 0) widest = Math.max(widest, dir[b] - dir[b - 1] + 1);
            }
            dirScan = widest <= SCAN_LIMIT;
            // A bucket that lies inside one slot (or inside no slot) is answered by one load, no scan and no
            // gap check: with slots and gaps aligned to the bucket size (a VMM's usual MiB-aligned layout)
            // every lookup takes that path, which keeps the instructions between two guest accesses few.
            whole = new int[buckets];
            wholeDelta = new long[buckets];
            long last = dirBase + dirSpan;
            for (int b = 0; b < buckets; b++) {
                long start = dirBase + ((long) b << k), end = Math.min(start + (1L << k), last);
                int first = dir[b];
                if (first >= n || s[first].baseGfn() >= end) whole[b] = GAP_BUCKET;
                else if (s[first].baseGfn() <= start && ends[first] >= end) whole[b] = first;
                else whole[b] = MIXED_BUCKET;
                // Only for a bucket the slot covers to its last gfn, so a gfn past the end of the last slot
                // (in the last bucket's tail) never finds one.
                boolean full = whole[b] >= 0 && ends[first] - start >= 1L << k;
                wholeDelta[b] = full ? table[first * STRIDE + HVA_DELTA] : NO_DELTA;
            }
        }
    }

    // ---------------------------------------------------------------- hot path

    /**
     * The index (for the {@code *At} accessors) of the slot holding {@code gfn}, or -1. Allocation-free,
     * lock-free; updates the last-used cache.
     */
    public int indexOf(long gfn) {
        final long rel = gfn - dirBase;
        if (Long.compareUnsigned(rel, dirSpan) >= 0) return -1;
        final int b = (int) (rel >>> dirShift);
        final int w = whole[b];
        if (w != MIXED_BUCKET) return w; // one load: the bucket lies in one slot or in no slot
        // A bucket where slots or gaps meet: KVM's last-used slot first, then the search.
        final long[] t = table;
        final int i = lastUsed;
        final int o = i * STRIDE;
        if (Long.compareUnsigned(gfn - t[o + BASE], t[o + NPAGES]) < 0) return i;
        return search(gfn, b);
    }

    private int search(long gfn, int b) {
        final long[] e = ends;
        int lo = dir[b];
        if (dirScan) {
            // the answer (first slot ending after gfn) exists because gfn < end of the last slot
            while (e[lo] <= gfn) lo++;
        } else {
            int len = dir[b + 1] - lo + 1;
            while (len > 1) {
                int half = len >>> 1;
                lo = e[lo + half - 1] <= gfn ? lo + half : lo;
                len -= half;
            }
        }
        if (table[lo * STRIDE + BASE] > gfn) return -1; // in a gap
        lastUsed = lo;
        return lo;
    }

    /** The hva of {@code gfn}, or {@link #BAD_HVA}. Allocation-free ({@code __gfn_to_hva_many} for a read). */
    public long gfnToHva(long gfn) {
        // A bucket inside one slot: one load gives the hva, not a slot index and then the slot's row.
        final long b = (gfn - dirBase) >>> dirShift; // a gfn below dirBase gives a b past the table (unsigned)
        if (Long.compareUnsigned(b, wholeDelta.length) < 0) {
            final long d = wholeDelta[(int) b];
            if (d != NO_DELTA) return d + (gfn << shift);
        }
        int i = indexOf(gfn);
        return i < 0 ? BAD_HVA : table[i * STRIDE + HVA_DELTA] + (gfn << shift);
    }

    /**
     * The hva of {@code gfn} for a write: {@link #RO_BAD_HVA} when the slot is READONLY, {@link #BAD_HVA}
     * without a slot.
     */
    public long gfnToHvaForWrite(long gfn) {
        int i = indexOf(gfn);
        if (i < 0) return BAD_HVA;
        int o = i * STRIDE;
        if ((table[o + FLAGS] & Memslot.READONLY) != 0) return RO_BAD_HVA;
        return table[o + HVA_DELTA] + (gfn << shift);
    }

    /** The hva of a guest physical address (page offset kept), or {@link #BAD_HVA}. */
    public long gpaToHva(long gpa) {
        long hva = gfnToHva(gpa >>> shift);
        return hva < 0 ? hva : hva + geometry.offset(gpa);
    }

    /** True for {@link #BAD_HVA} and {@link #RO_BAD_HVA} (KVM's {@code kvm_is_error_hva}). */
    public static boolean isErrorHva(long hva) {
        return hva < 0;
    }

    /** The hva of {@code gfn} in the slot at {@code index}; the caller got index from {@link #indexOf}. */
    public long hvaAt(int index, long gfn) {
        return table[index * STRIDE + HVA_DELTA] + (gfn << shift);
    }

    public long baseGfnAt(int index) {
        return table[index * STRIDE + BASE];
    }

    public long npagesAt(int index) {
        return table[index * STRIDE + NPAGES];
    }

    public long endGfnAt(int index) {
        return ends[index];
    }

    public int flagsAt(int index) {
        return (int) table[index * STRIDE + FLAGS];
    }

    public Memslot slotAt(int index) {
        return slots[index];
    }

    // ---------------------------------------------------------------- non-hot API

    /** The slot holding {@code gfn}, or null ({@code __gfn_to_memslot}). */
    public Memslot findByGfn(long gfn) {
        int i = indexOf(gfn);
        return i < 0 ? null : slots[i];
    }

    /** The slot with this id, or null ({@code id_to_memslot}). */
    public Memslot byId(int id) {
        int k = Arrays.binarySearch(idsSorted, id);
        return k < 0 ? null : slots[indexOfId[k]];
    }

    /** The first slot (in gfn order) overlapping {@code [startGfn, endGfn)}, or null. */
    public Memslot firstOverlapping(long startGfn, long endGfn) {
        for (Memslot m : slots) {
            if (m.baseGfn() < endGfn && startGfn < m.endGfn()) return m;
        }
        return null;
    }

    /** The slots, in base-gfn order. */
    public List<Memslot> slots() {
        return List.of(slots);
    }

    /** The number of slots. */
    public int size() {
        return slots.length;
    }

    public boolean isEmpty() {
        return slots.length == 0;
    }

    /** Sum of the slots' npages ({@code kvm->nr_memslot_pages} for this address space). */
    public long totalPages() {
        return totalPages;
    }

    /** Bumped by every published change; unique across address spaces of one {@link Memslots}. */
    public long generation() {
        return generation;
    }

    public int addressSpace() {
        return addressSpace;
    }

    public PageGeometry geometry() {
        return geometry;
    }

    /** Buckets of the gfn directory (for the test of its sizing, in this package: not API). */
    int directoryBuckets() {
        return dir.length - 1;
    }

    /** True when buckets are scanned linearly, false when some bucket is crowded and they are binary-searched. */
    boolean directoryScans() {
        return dirScan;
    }

    /** This set minus the slot with id {@code removeId} (if any) plus {@code add} (if not null). */
    MemslotSet with(int removeId, Memslot add, long newGeneration) {
        List<Memslot> l = new ArrayList<>(slots.length + 1);
        for (Memslot m : slots) if (m.id() != removeId) l.add(m);
        if (add != null) l.add(add);
        return new MemslotSet(geometry, addressSpace, newGeneration, l.toArray(new Memslot[0]));
    }

    @Override
    public String toString() {
        return "MemslotSet[as " + addressSpace + ", gen " + generation + ", " + slots.length + " slots, "
                + geometry + "]";
    }
}
