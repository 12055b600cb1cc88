package io.guestmem.memslot;

import java.util.AbstractList;
import java.util.Arrays;
import java.util.Collection;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;
import java.util.RandomAccess;

/**
 * An immutable snapshot of one address space's memslots, KVM's {@code struct kvm_memslots}: what a reader
 * saw when it started. {@link Memslots} publishes a new set for every change; a reader holding an older set
 * keeps seeing exactly that set, and compares {@link #generation()} to learn that something changed.
 *
 * <h2>Persistent: a change costs O(chunk + directory), not O(slots)</h2>
 * A new set shares everything a change does not touch with the set it was made from, as KVM's
 * scalable-memslots rework edits an inactive copy and swaps it in: {@link #with} copies a few small arrays
 * (one chunk of the by-id table, one leaf of the gfn order, the chunks of the lookup directory the slot
 * covers, and the top-level arrays of those three, each a few hundred entries at 32764 slots) and never
 * walks the slots. Three structures, all copy-on-write:
 * <ul>
 *   <li>By id: chunks of 256 slots indexed by slot id. A slot's <em>index</em> (what {@link #indexOf}
 *       returns and the {@code *At} accessors take) is its id, so it stays the same across changes of other
 *       slots.</li>
 *   <li>Gfn order: sorted leaves of at most 128 slots (base and end gfns in arrays of their own), under a
 *       directory of the leaves' last end gfns; the search path is a binary search of each.</li>
 *   <li>The lookup directory: guest-physical space from {@code dirBase} cut into 2^k-gfn buckets (about 4 per
 *       slot when built), in chunks of 1024. A bucket that lies wholly inside one slot holds that slot's id and
 *       hva delta; a bucket no slot touches is a gap; any other is mixed. A change rewrites the buckets its
 *       slot covers (before and after the change) and no others. The directory is built anew (with room to
 *       grow: twice the span) only when a slot falls outside it or the slot count doubled or fell to a quarter
 *       since it was built, so its cost is amortized over the changes that made it necessary.</li>
 * </ul>
 *
 * <h2>The lookup path</h2>
 * {@link #indexOf(long)}, {@link #gfnToHva(long)} and {@link #gpaToHva(long)} allocate nothing and take no
 * lock. A bucket inside one slot (with slots aligned to the bucket size, a VMM's usual layout, every lookup)
 * answers with two dependent loads (the directory chunk, then its entry). A mixed bucket tries the last slot
 * found first (KVM's {@code last_used_slot}: a plain field, written by whichever reader searched last; a racy
 * write only costs a later reader one extra search, it can never return a wrong slot since every cached index
 * is a slot of this set), then the binary searches.
 *
 * <p>Errors are values: {@link #BAD_HVA} (KVM's {@code KVM_HVA_ERR_BAD}: no slot) and {@link #RO_BAD_HVA}
 * ({@code KVM_HVA_ERR_RO_BAD}: a write to a read-only slot). Both are negative, and no user-space address is.
 */
public final class MemslotSet {

    /** No slot holds the gfn ({@code KVM_HVA_ERR_BAD}). */
    public static final long BAD_HVA = -1L;
    /** A write lookup hit a READONLY slot ({@code KVM_HVA_ERR_RO_BAD}). */
    public static final long RO_BAD_HVA = -2L;

    /** Slot ids: KVM's are the low 16 bits of {@code kvm_userspace_memory_region.slot}. */
    static final int MAX_ID = 0xffff;
    private static final int ID_BITS = 8, ID_CHUNK = 1 << ID_BITS, ID_MASK = ID_CHUNK - 1;
    /** Leaves split past this many slots; a leaf under LEAF_MIN merges with a neighbour when both fit in LEAF_FILL. */
    static final int LEAF_MAX = 128;
    private static final int LEAF_MIN = 32, LEAF_FILL = 96;
    private static final int DIR_BITS = 10, DIR_CHUNK = 1 << DIR_BITS, DIR_MASK = DIR_CHUNK - 1;
    // slot directory values besides a slot id: no gfn of the bucket is in a slot / slots or gaps meet in it.
    private static final int GAP_BUCKET = -1, MIXED_BUCKET = -2;
    // delta directory value of a gap or mixed bucket (a slot whose delta is exactly this takes the indexOf path).
    private static final long NO_DELTA = Long.MIN_VALUE;
    /** The chunks of a stretch of gaps, shared by every directory: never written (writers copy a chunk first). */
    private static final long[] GAP_DELTAS = new long[DIR_CHUNK];
    private static final int[] GAP_SLOTS = new int[DIR_CHUNK];
    static {
        Arrays.fill(GAP_DELTAS, NO_DELTA);
        Arrays.fill(GAP_SLOTS, GAP_BUCKET);
    }

    private static final Leaf[] NO_LEAVES = {};
    private static final Memslot[][] NO_IDS = {};

    private final PageGeometry geometry;
    private final int shift;            // the geometry's page shift, kept here: one load less per lookup
    private final int addressSpace;
    private final long generation;
    private final long parent;          // generation of the set this one was made from by with(), or -1
    private final int count;
    private final long totalPages;

    private final Memslot[][] byId;     // byId[id >>> ID_BITS][id & ID_MASK], null chunks for no slot

    private final Leaf[] leaves;        // gfn order
    private final long[] leafEnd;       // end gfn of each leaf's last slot, ascending
    private final int[] leafStart;      // position (in gfn order) of each leaf's first slot

    private final long dirBase;         // gfn of bucket 0
    private final int dirShift;         // log2 of the bucket size in gfns
    private final long dirBuckets;      // buckets (0 when empty); every slot lies inside them
    private final long[][] deltaDir;    // hva - (gfn << shift) of the slot holding the whole bucket, or NO_DELTA
    private final int[][] slotDir;      // id of the slot holding the whole bucket, GAP_BUCKET or MIXED_BUCKET
    private final int dirBuiltFor;      // slot count when the directory was last built whole

    /** Racy last-used cache, as KVM's {@code slots->last_used_slot}; -1 or the id of a slot of this set. */
    private int lastUsed = -1;

    /** A run of slots in gfn order, with their base and end gfns and ids in arrays of their own. Immutable. */
    private static final class Leaf {
        final Memslot[] slots;
        final long[] base, end;
        final int[] ids;

        Leaf(Memslot[] slots) {
            this.slots = slots;
            int n = slots.length;
            base = new long[n];
            end = new long[n];
            ids = new int[n];
            for (int i = 0; i < n; i++) {
                base[i] = slots[i].baseGfn();
                end[i] = slots[i].endGfn();
                ids[i] = slots[i].id();
            }
        }

        int size() {
            return slots.length;
        }

        long last() {
            return end[end.length - 1];
        }

        /** The first position whose end is above {@code gfn} (size() when none). */
        int ceiling(long gfn) {
            final long[] e = end;
            int a = 0, z = e.length;
            while (a < z) {
                int mid = (a + z) >>> 1;
                if (e[mid] <= gfn) a = mid + 1;
                else z = mid;
            }
            return a;
        }

        Leaf inserted(int p, Memslot m) {
            Memslot[] s = new Memslot[slots.length + 1];
            System.arraycopy(slots, 0, s, 0, p);
            s[p] = m;
            System.arraycopy(slots, p, s, p + 1, slots.length - p);
            return new Leaf(s);
        }

        Leaf removed(int p) {
            Memslot[] s = new Memslot[slots.length - 1];
            System.arraycopy(slots, 0, s, 0, p);
            System.arraycopy(slots, p + 1, s, p, slots.length - p - 1);
            return new Leaf(s);
        }

        Leaf replaced(int p, Memslot m) {
            Memslot[] s = slots.clone();
            s[p] = m;
            return new Leaf(s);
        }
    }

    /**
     * A set of the given slots (any order). They must all belong to {@code addressSpace}, have distinct ids
     * in [0, 65535] and not overlap; {@link Memslots} guarantees that, other callers (tests) get an
     * IllegalArgumentException.
     */
    public static MemslotSet of(PageGeometry geometry, int addressSpace, long generation, Collection<Memslot> slots) {
        Memslot[] s = slots.toArray(new Memslot[0]);
        Arrays.sort(s, Comparator.comparingLong(Memslot::baseGfn));
        int n = s.length;
        long total = 0;
        int maxId = -1;
        for (int i = 0; i < n; i++) {
            Memslot m = s[i];
            check(m, addressSpace);
            if (i > 0 && s[i - 1].endGfn() > m.baseGfn()) {
                throw new IllegalArgumentException("slots " + s[i - 1].id() + " and " + m.id() + " overlap");
            }
            total += m.npages();
            maxId = Math.max(maxId, m.id());
        }
        Memslot[][] ids = new Memslot[maxId < 0 ? 0 : (maxId >>> ID_BITS) + 1][];
        for (Memslot m : s) {
            Memslot[] c = ids[m.id() >>> ID_BITS];
            if (c == null) c = ids[m.id() >>> ID_BITS] = new Memslot[ID_CHUNK];
            if (c[m.id() & ID_MASK] != null) throw new IllegalArgumentException("duplicate slot id " + m.id());
            c[m.id() & ID_MASK] = m;
        }
        int nl = (n + LEAF_FILL - 1) / LEAF_FILL;
        Leaf[] leaves = new Leaf[nl];
        for (int j = 0; j < nl; j++) {
            leaves[j] = new Leaf(Arrays.copyOfRange(s, j * LEAF_FILL, Math.min(n, (j + 1) * LEAF_FILL)));
        }
        return build(geometry, addressSpace, generation, -1, n, total, ids, leaves, false);
    }

    /** An empty set. */
    public static MemslotSet empty(PageGeometry geometry, int addressSpace) {
        return build(geometry, addressSpace, 0, -1, 0, 0, NO_IDS, NO_LEAVES, false);
    }

    private static void check(Memslot m, int addressSpace) {
        if (m.addressSpace() != addressSpace) {
            throw new IllegalArgumentException("slot " + m.id() + " is in address space " + m.addressSpace()
                    + ", not " + addressSpace);
        }
        if (m.npages() <= 0 || m.baseGfn() < 0) throw new IllegalArgumentException("empty or negative slot " + m);
        if (m.id() < 0 || m.id() > MAX_ID) throw new IllegalArgumentException("slot id " + m.id() + " outside [0, 65535]");
    }

    /** A set with the leaf directory derived from {@code leaves} and a lookup directory built whole. */
    private static MemslotSet build(PageGeometry g, int as, long generation, long parent, int n, long total,
                                    Memslot[][] ids, Leaf[] leaves, boolean headroom) {
        long[] ends = new long[leaves.length];
        int[] starts = new int[leaves.length];
        int pos = 0;
        for (int j = 0; j < leaves.length; j++) {
            ends[j] = leaves[j].last();
            starts[j] = pos;
            pos += leaves[j].size();
        }
        Dir d = Dir.whole(leaves, ends, n, headroom, g.shift());
        return new MemslotSet(g, as, generation, parent, n, total, ids, leaves, ends, starts, d);
    }

    private MemslotSet(PageGeometry geometry, int addressSpace, long generation, long parent, int count,
                       long totalPages, Memslot[][] byId, Leaf[] leaves, long[] leafEnd, int[] leafStart, Dir d) {
        this.geometry = geometry;
        this.shift = geometry.shift();
        this.addressSpace = addressSpace;
        this.generation = generation;
        this.parent = parent;
        this.count = count;
        this.totalPages = totalPages;
        this.byId = byId;
        this.leaves = leaves;
        this.leafEnd = leafEnd;
        this.leafStart = leafStart;
        this.dirBase = d.base;
        this.dirShift = d.shift;
        this.dirBuckets = d.buckets;
        this.deltaDir = d.deltas;
        this.slotDir = d.slots;
        this.dirBuiltFor = d.builtFor;
    }

    // ---------------------------------------------------------------- hot path

    /**
     * The index (the slot's id, for the {@code *At} accessors) of the slot holding {@code gfn}, or -1.
     * Allocation-free, lock-free; updates the last-used cache.
     */
    public int indexOf(long gfn) {
        final long b = (gfn - dirBase) >>> dirShift; // a gfn below dirBase gives a b past the directory (unsigned)
        if (Long.compareUnsigned(b, dirBuckets) >= 0) return -1;
        final int w = slotDir[(int) (b >>> DIR_BITS)][(int) b & DIR_MASK];
        if (w != MIXED_BUCKET) return w; // the bucket lies in one slot or in no slot
        // A bucket where slots or gaps meet: KVM's last-used slot first, then the search.
        final int i = lastUsed;
        if (i >= 0) {
            final Memslot m = byId[i >>> ID_BITS][i & ID_MASK];
            if (Long.compareUnsigned(gfn - m.baseGfn(), m.npages()) < 0) return i;
        }
        return search(gfn);
    }

    private int search(long gfn) {
        final long[] le = leafEnd;
        int lo = 0, hi = le.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (le[mid] <= gfn) lo = mid + 1;
            else hi = mid;
        }
        if (lo == le.length) return -1;
        final Leaf f = leaves[lo];
        final int p = f.ceiling(gfn); // < size: the leaf's last end is above gfn
        if (f.base[p] > gfn) return -1; // in a gap
        final int id = f.ids[p];
        lastUsed = id;
        return id;
    }

    /** The hva of {@code gfn}, or {@link #BAD_HVA}. Allocation-free ({@code __gfn_to_hva_many} for a read). */
    public long gfnToHva(long gfn) {
        // A bucket inside one slot: the directory gives the hva, not a slot index and then the slot.
        final long b = (gfn - dirBase) >>> dirShift;
        if (Long.compareUnsigned(b, dirBuckets) < 0) {
            final long d = deltaDir[(int) (b >>> DIR_BITS)][(int) b & DIR_MASK];
            if (d != NO_DELTA) return d + (gfn << shift);
        }
        int i = indexOf(gfn);
        return i < 0 ? BAD_HVA : hvaAt(i, gfn);
    }

    /**
     * The hva of {@code gfn} for a write: {@link #RO_BAD_HVA} when the slot is READONLY, {@link #BAD_HVA}
     * without a slot.
     */
    public long gfnToHvaForWrite(long gfn) {
        int i = indexOf(gfn);
        if (i < 0) return BAD_HVA;
        Memslot m = slotAt(i);
        if ((m.flags() & Memslot.READONLY) != 0) return RO_BAD_HVA;
        return m.userspaceAddr() + ((gfn - m.baseGfn()) << shift);
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
        Memslot m = slotAt(index);
        return m.userspaceAddr() + ((gfn - m.baseGfn()) << shift);
    }

    public long baseGfnAt(int index) {
        return slotAt(index).baseGfn();
    }

    public long npagesAt(int index) {
        return slotAt(index).npages();
    }

    public long endGfnAt(int index) {
        return slotAt(index).endGfn();
    }

    public int flagsAt(int index) {
        return slotAt(index).flags();
    }

    /**
     * The slot at {@code index} (an index {@link #indexOf} returned: the slot's id). For the slots in gfn
     * order use {@link #slots()}.
     */
    public Memslot slotAt(int index) {
        return byId[index >>> ID_BITS][index & ID_MASK];
    }

    // ---------------------------------------------------------------- non-hot API

    /** The slot holding {@code gfn}, or null ({@code __gfn_to_memslot}). */
    public Memslot findByGfn(long gfn) {
        int i = indexOf(gfn);
        return i < 0 ? null : slotAt(i);
    }

    /** The slot with this id, or null ({@code id_to_memslot}). */
    public Memslot byId(int id) {
        if (id < 0 || (id >>> ID_BITS) >= byId.length) return null;
        Memslot[] c = byId[id >>> ID_BITS];
        return c == null ? null : c[id & ID_MASK];
    }

    /** The first slot (in gfn order) overlapping {@code [startGfn, endGfn)}, or null. O(log slots). */
    public Memslot firstOverlapping(long startGfn, long endGfn) {
        return firstOverlapping(startGfn, endGfn, -1);
    }

    /**
     * The first slot (in gfn order) other than slot {@code exceptId} overlapping {@code [startGfn, endGfn)}, or
     * null: the overlap check of a CREATE or MOVE, which ignores the slot being moved. O(log slots).
     */
    public Memslot firstOverlapping(long startGfn, long endGfn, int exceptId) {
        if (Long.compareUnsigned(startGfn, endGfn) >= 0) return null;
        int j = leafCeiling(startGfn);
        if (j == leaves.length) return null;
        int p = leaves[j].ceiling(startGfn);
        for (; j < leaves.length; j++, p = 0) {
            Leaf f = leaves[j];
            for (; p < f.size(); p++) {
                if (f.base[p] >= endGfn) return null;
                if (f.ids[p] != exceptId) return f.slots[p];
            }
        }
        return null;
    }

    /** The first leaf whose last end is above {@code gfn} (leaves.length when none). */
    private int leafCeiling(long gfn) {
        final long[] le = leafEnd;
        int lo = 0, hi = le.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (le[mid] <= gfn) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /**
     * The slots, in base-gfn order: an immutable view of this set (made in O(1); {@code get(i)} is O(log slots),
     * iteration O(1) per slot).
     */
    public List<Memslot> slots() {
        return new InOrder();
    }

    private final class InOrder extends AbstractList<Memslot> implements RandomAccess {
        @Override
        public Memslot get(int position) {
            if (position < 0 || position >= count) throw new IndexOutOfBoundsException(position + " of " + count);
            final int[] ls = leafStart;
            int lo = 0, hi = ls.length - 1; // the last leaf starting at or before position
            while (lo < hi) {
                int mid = (lo + hi + 1) >>> 1;
                if (ls[mid] <= position) lo = mid;
                else hi = mid - 1;
            }
            return leaves[lo].slots[position - ls[lo]];
        }

        @Override
        public int size() {
            return count;
        }

        @Override
        public Iterator<Memslot> iterator() {
            return new Iterator<>() {
                int j, p;

                @Override
                public boolean hasNext() {
                    return j < leaves.length;
                }

                @Override
                public Memslot next() {
                    if (j >= leaves.length) throw new NoSuchElementException();
                    Leaf f = leaves[j];
                    Memslot m = f.slots[p++];
                    if (p == f.size()) {
                        j++;
                        p = 0;
                    }
                    return m;
                }
            };
        }
    }

    /** The number of slots. */
    public int size() {
        return count;
    }

    public boolean isEmpty() {
        return count == 0;
    }

    /** Sum of the slots' npages ({@code kvm->nr_memslot_pages} for this address space). */
    public long totalPages() {
        return totalPages;
    }

    /** Bumped by every published change; unique across address spaces of one {@link Memslots}. */
    public long generation() {
        return generation;
    }

    /**
     * The generation of the set this one was made from by one change ({@link Memslots} publishes each change
     * as {@code previous.with(...)}), or -1 for a set built whole: a follower holding the set of that
     * generation may apply the one change instead of rereading every slot.
     */
    public long parentGeneration() {
        return parent;
    }

    public int addressSpace() {
        return addressSpace;
    }

    public PageGeometry geometry() {
        return geometry;
    }

    /** Buckets of the gfn directory (for the test of its sizing, in this package: not API). */
    long directoryBuckets() {
        return dirBuckets;
    }

    /** Buckets where slots or gaps meet, which take the search path (tests, in this package: not API). */
    long mixedBuckets() {
        long mixed = 0;
        for (long b = 0; b < dirBuckets; b++) {
            if (slotDir[(int) (b >>> DIR_BITS)][(int) b & DIR_MASK] == MIXED_BUCKET) mixed++;
        }
        return mixed;
    }

    /** Leaves of the gfn order (tests, in this package: not API). */
    int leafCount() {
        return leaves.length;
    }

    // ---------------------------------------------------------------- one change

    /**
     * This set minus the slot with id {@code removeId} (if any) plus {@code add} (if not null), sharing all
     * it can with this set: O(chunk + directory) for the arrays copied, plus the directory buckets the removed
     * and the added slot cover. {@code add} must not overlap a slot that stays (IllegalArgumentException).
     */
    MemslotSet with(int removeId, Memslot add, long newGeneration) {
        Memslot old = byId(removeId);
        if (add != null) check(add, addressSpace);
        if (add != null && add.id() != removeId && byId(add.id()) != null) {
            throw new IllegalArgumentException("duplicate slot id " + add.id());
        }
        if (old == null && add == null) {
            return new MemslotSet(geometry, addressSpace, newGeneration, generation, count, totalPages, byId, leaves,
                    leafEnd, leafStart, new Dir(dirBase, dirShift, dirBuckets, deltaDir, slotDir, dirBuiltFor));
        }

        // by id
        Memslot[][] ids = byId;
        if (old != null) ids = putId(ids, old.id(), null);
        if (add != null) ids = putId(ids, add.id(), add);

        // gfn order
        Leaf[] ls = leaves;
        long[] le = leafEnd;
        int[] st = leafStart;
        boolean sameRange = old != null && add != null && old.baseGfn() == add.baseGfn()
                && old.npages() == add.npages();
        if (sameRange) {
            int j = leafCeiling(old.baseGfn());
            Leaf f = ls[j];
            ls = ls.clone();
            ls[j] = f.replaced(f.ceiling(old.baseGfn()), add);
        } else {
            LeafEdit e = new LeafEdit(ls, le, st);
            if (old != null) e.remove(old);
            if (add != null) e.insert(add);
            ls = e.leaves;
            le = e.ends;
            st = e.starts;
        }

        int n = count + (add != null ? 1 : 0) - (old != null ? 1 : 0);
        long total = totalPages + (add != null ? add.npages() : 0) - (old != null ? old.npages() : 0);

        // the lookup directory
        Dir d = new Dir(dirBase, dirShift, dirBuckets, deltaDir, slotDir, dirBuiltFor);
        if (n == 0) {
            d = Dir.whole(ls, le, 0, false, shift);
        } else if (!sameRange || old.userspaceAddr() != add.userspaceAddr()) {
            long lo = ls[0].base[0], hi = le[le.length - 1];
            boolean fits = dirBuckets > 0 && lo >= dirBase && hi - dirBase <= dirBuckets << dirShift;
            if (!fits || n > 2 * Math.max(dirBuiltFor, 8) || n < dirBuiltFor / 4) {
                d = Dir.whole(ls, le, n, true, shift);
            } else {
                d = d.edit(ls, le, old, add, shift);
            }
        }
        return new MemslotSet(geometry, addressSpace, newGeneration, generation, n, total, ids, ls, le, st, d);
    }

    private static Memslot[][] putId(Memslot[][] ids, int id, Memslot m) {
        int c = id >>> ID_BITS;
        Memslot[][] top = Arrays.copyOf(ids, Math.max(ids.length, c + 1));
        Memslot[] chunk = top[c] == null ? new Memslot[ID_CHUNK] : top[c].clone();
        chunk[id & ID_MASK] = m;
        top[c] = chunk;
        return top;
    }

    /** One change of the gfn order: the leaf arrays copied once, then leaves edited in place of the copies. */
    private static final class LeafEdit {
        Leaf[] leaves;
        long[] ends;
        int[] starts;

        LeafEdit(Leaf[] leaves, long[] ends, int[] starts) {
            this.leaves = leaves;
            this.ends = ends;
            this.starts = starts;
        }

        private int ceiling(long gfn) {
            int lo = 0, hi = leaves.length;
            while (lo < hi) {
                int mid = (lo + hi) >>> 1;
                if (ends[mid] <= gfn) lo = mid + 1;
                else hi = mid;
            }
            return lo;
        }

        void remove(Memslot m) {
            int j = ceiling(m.baseGfn());
            Leaf f = leaves[j];
            int p = f.ceiling(m.baseGfn());
            if (f.ids[p] != m.id()) throw new IllegalStateException("slot " + m.id() + " is not where its gfns say");
            if (f.size() == 1) {
                replace(j, 1);
                return;
            }
            Leaf r = f.removed(p);
            // a small leaf joins a neighbour when both fit comfortably in one
            if (r.size() < LEAF_MIN && j + 1 < leaves.length && r.size() + leaves[j + 1].size() <= LEAF_FILL) {
                replace(j, 2, merge(r, leaves[j + 1]));
            } else if (r.size() < LEAF_MIN && j > 0 && r.size() + leaves[j - 1].size() <= LEAF_FILL) {
                replace(j - 1, 2, merge(leaves[j - 1], r));
            } else {
                replace(j, 1, r);
            }
        }

        void insert(Memslot m) {
            if (leaves.length == 0) {
                replace(0, 0, new Leaf(new Memslot[] {m}));
                return;
            }
            int j = Math.min(ceiling(m.baseGfn()), leaves.length - 1);
            Leaf f = leaves[j];
            int p = f.ceiling(m.baseGfn());
            // neighbours in gfn order: the slot before p (maybe in the previous leaf) and the one at p
            Memslot before = p > 0 ? f.slots[p - 1] : j > 0 ? leaves[j - 1].slots[leaves[j - 1].size() - 1] : null;
            Memslot after = p < f.size() ? f.slots[p] : null;
            if ((before != null && before.endGfn() > m.baseGfn()) || (after != null && after.baseGfn() < m.endGfn())) {
                Memslot other = before != null && before.endGfn() > m.baseGfn() ? before : after;
                throw new IllegalArgumentException("slots " + other.id() + " and " + m.id() + " overlap");
            }
            Leaf g = f.inserted(p, m);
            if (g.size() > LEAF_MAX) {
                int half = g.size() / 2;
                replace(j, 1, new Leaf(Arrays.copyOfRange(g.slots, 0, half)),
                        new Leaf(Arrays.copyOfRange(g.slots, half, g.size())));
            } else {
                replace(j, 1, g);
            }
        }

        private static Leaf merge(Leaf a, Leaf b) {
            Memslot[] s = Arrays.copyOf(a.slots, a.size() + b.size());
            System.arraycopy(b.slots, 0, s, a.size(), b.size());
            return new Leaf(s);
        }

        /** Leaves {@code [j, j + gone)} become {@code with}; ends and starts follow. */
        private void replace(int j, int gone, Leaf... with) {
            int n = leaves.length - gone + with.length;
            Leaf[] l = new Leaf[n];
            long[] e = new long[n];
            int[] s = new int[n];
            System.arraycopy(leaves, 0, l, 0, j);
            System.arraycopy(ends, 0, e, 0, j);
            System.arraycopy(starts, 0, s, 0, j);
            int pos = j == 0 ? 0 : starts[j - 1] + leaves[j - 1].size();
            for (int k = 0; k < with.length; k++) {
                l[j + k] = with[k];
                e[j + k] = with[k].last();
                s[j + k] = pos;
                pos += with[k].size();
            }
            for (int k = j + gone; k < leaves.length; k++) {
                int t = k - gone + with.length;
                l[t] = leaves[k];
                e[t] = ends[k];
                s[t] = pos;
                pos += leaves[k].size();
            }
            leaves = l;
            ends = e;
            starts = s;
        }
    }

    /** The lookup directory: its geometry and chunks (shared with the sets it was not changed for). */
    private static final class Dir {
        final long base;
        final int shift;
        final long buckets;
        long[][] deltas;
        int[][] slots;
        final int builtFor;
        private boolean[] copied; // during an edit: chunks already copied

        Dir(long base, int shift, long buckets, long[][] deltas, int[][] slots, int builtFor) {
            this.base = base;
            this.shift = shift;
            this.buckets = buckets;
            this.deltas = deltas;
            this.slots = slots;
            this.builtFor = builtFor;
        }

        /**
         * A directory built whole over the slots of {@code leaves}: about 4 buckets per slot over their span
         * (with {@code headroom}: twice the span and twice the buckets, so that a set growing upward one slot
         * at a time is rebuilt only when its span doubles).
         */
        static Dir whole(Leaf[] leaves, long[] ends, int n, boolean headroom, int pageShift) {
            if (n == 0) return new Dir(0, 0, 0, new long[][] {GAP_DELTAS}, new int[][] {GAP_SLOTS}, 0);
            long lo = leaves[0].base[0], span = ends[ends.length - 1] - lo;
            long target = Math.max(64, 4L * n);
            if (headroom) {
                // twice the span, without passing the largest gfn
                long room = Math.min(span, (Long.MAX_VALUE >>> pageShift) - lo - span);
                span += Math.max(0, room);
                target *= 2;
            }
            int k = 0;
            while (((span - 1) >>> k) + 1 > target) k++;
            long buckets = ((span - 1) >>> k) + 1;
            int chunks = (int) ((buckets + DIR_MASK) >>> DIR_BITS);
            long[][] deltas = new long[chunks][];
            int[][] slots = new int[chunks][];
            Arrays.fill(deltas, GAP_DELTAS);
            Arrays.fill(slots, GAP_SLOTS);
            Dir d = new Dir(lo, k, buckets, deltas, slots, n);
            d.copied = new boolean[chunks];
            for (Leaf f : leaves) {
                for (int p = 0; p < f.size(); p++) d.cover(f.slots[p], pageShift);
            }
            d.copied = null;
            return d;
        }

        /** The buckets {@code m} touches: whole ones hold it, the edges are mixed. */
        private void cover(Memslot m, int pageShift) {
            long first = (m.baseGfn() - base) >>> shift, last = (m.endGfn() - 1 - base) >>> shift;
            long delta = m.userspaceAddr() - (m.baseGfn() << pageShift);
            for (long b = first; b <= last; b++) {
                long bs = base + (b << shift);
                if (m.baseGfn() <= bs && m.endGfn() - bs >= 1L << shift) put(b, m.id(), delta);
                else put(b, MIXED_BUCKET, NO_DELTA);
            }
        }

        /** A copy of this directory with the buckets of {@code old} and {@code add} classified anew. */
        Dir edit(Leaf[] leaves, long[] ends, Memslot old, Memslot add, int pageShift) {
            Dir d = new Dir(base, shift, buckets, deltas.clone(), slots.clone(), builtFor);
            d.copied = new boolean[deltas.length];
            if (old != null) {
                long first = (old.baseGfn() - base) >>> shift, last = (old.endGfn() - 1 - base) >>> shift;
                for (long b = first; b <= last; b++) {
                    long bs = base + (b << shift), be = bs + (1L << shift);
                    boolean inside = old.baseGfn() <= bs && old.endGfn() >= be;
                    boolean touchesAdd = add != null && add.baseGfn() < be && bs < add.endGfn();
                    if (inside && !touchesAdd) d.put(b, GAP_BUCKET, NO_DELTA); // nothing else overlapped old
                    else d.classify(b, leaves, ends, pageShift);
                }
            }
            if (add != null) {
                long first = (add.baseGfn() - base) >>> shift, last = (add.endGfn() - 1 - base) >>> shift;
                long delta = add.userspaceAddr() - (add.baseGfn() << pageShift);
                for (long b = first; b <= last; b++) {
                    long bs = base + (b << shift);
                    if (add.baseGfn() <= bs && add.endGfn() - bs >= 1L << shift) d.put(b, add.id(), delta);
                    else d.classify(b, leaves, ends, pageShift);
                }
            }
            d.copied = null;
            return d;
        }

        /** Bucket {@code b} from the slots of {@code leaves}: in one slot, in none, or mixed. */
        private void classify(long b, Leaf[] leaves, long[] ends, int pageShift) {
            long bs = base + (b << shift), be = bs + (1L << shift);
            int lo = 0, hi = ends.length;
            while (lo < hi) {
                int mid = (lo + hi) >>> 1;
                if (ends[mid] <= bs) lo = mid + 1;
                else hi = mid;
            }
            if (lo == ends.length) {
                put(b, GAP_BUCKET, NO_DELTA);
                return;
            }
            Leaf f = leaves[lo];
            Memslot m = f.slots[f.ceiling(bs)];
            if (m.baseGfn() >= be) put(b, GAP_BUCKET, NO_DELTA);
            else if (m.baseGfn() <= bs && m.endGfn() >= be) put(b, m.id(), m.userspaceAddr() - (m.baseGfn() << pageShift));
            else put(b, MIXED_BUCKET, NO_DELTA);
        }

        private void put(long b, int slot, long delta) {
            int c = (int) (b >>> DIR_BITS), i = (int) b & DIR_MASK;
            if (!copied[c]) {
                deltas[c] = deltas[c].clone();
                slots[c] = slots[c].clone();
                copied[c] = true;
            }
            deltas[c][i] = delta;
            slots[c][i] = slot;
        }
    }

    @Override
    public String toString() {
        return "MemslotSet[as " + addressSpace + ", gen " + generation + ", " + count + " slots, " + geometry + "]";
    }
}
