package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;

import java.lang.invoke.VarHandle;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * KVM's MMU-notifier invalidation protocol ({@code kvm_mmu_notifier_invalidate_range_start/end},
 * {@code kvm_mmu_invalidate_begin/range_add/end}, {@code mmu_invalidate_retry[_gfn]}) over one
 * {@link Memslots}.
 *
 * <h2>Readers (allocation-free, lock-free)</h2>
 * <pre>{@code
 * long seq = notifier.sequence();          // mmu_invalidate_seq, BEFORE reading the memslot set
 * MemslotSet set = memslots.current();
 * long hva = set.gfnToHva(gfn);
 * ... compute a result from hva (pagemap, the page's contents, a pfn) ...
 * if (notifier.retryGfn(gfn, seq)) { retry; }   // mmu_invalidate_retry_gfn
 * }</pre>
 * A result computed after {@link #sequence()} is stale, and {@link #retryGfn} says so, whenever an
 * invalidation covering its gfn started before the check: either that invalidation is still in progress
 * (in-progress count non-zero and the gfn in the in-flight range) or it ended (the sequence moved on). Like
 * KVM, the in-flight range is one gfn range for the whole VM, the min/max merge of every range added since the
 * in-progress count last left zero, and {@link #retry} ignores ranges (any invalidation in progress or any
 * new sequence). The check is a point in time: a caller that keeps using a result afterwards must also
 * listen ({@link #addListener}) and drop it at {@code invalidateRangeStart}, as KVM zaps SPTEs or marks a
 * {@code gfn_to_pfn_cache} invalid.
 *
 * <h2>Writers</h2>
 * Whatever changes what an hva maps (munmap, MADV_DONTNEED, mprotect, hole punch, mremap) runs inside
 * {@code try (var inv = notifier.invalidate(hvaStart, hvaEnd)) { ... }}. The hva range is turned into gfn
 * ranges through the current memslot sets of every address space, as {@code kvm_handle_hva_range} does; an
 * hva range no slot maps counts nothing and bumps nothing (listeners still hear of it). While hva
 * invalidations are in flight, memslot changes wait (KVM's {@code mn_active_invalidate_count}), so that start
 * and end see the same slots. Memslot DELETE and MOVE, and a FLAGS_ONLY change that starts dirty logging,
 * invalidate the gfns the slot covered (for MOVE also the gfns it moves to) around the publication of the new
 * set: creating this notifier installs it as the {@link Memslots.PublishGate}, so this is automatic.
 *
 * <h2>What no userspace notifier sees</h2>
 * The kernel changes the pfn behind an hva without any userspace-visible event when it migrates a page
 * (NUMA balancing, memory compaction, CMA, memory hot-unplug, {@code move_pages}), when khugepaged collapses
 * 4K pages into a THP (or splits one), when KSM merges pages, and on swap-out/in. KVM sees these through the
 * kernel's MMU notifier; userfaultfd (the behind-the-library's-back source) does not report them, and this
 * class cannot either. A pfn or mapping level is therefore only trusted for the instant it was verified: a
 * caller that needs it revalidates by taking {@link #sequence()}, re-reading pagemap (and kpageflags) for the
 * hva, and accepting the answer only if it equals the cached one and {@link #retryGfn} is false; pinned pages
 * (mlock does not prevent migration, FOLL_LONGTERM pins and hugetlb do) are the only stable pfns.
 */
public final class MmuNotifier {

    /** The in-flight range when none was added ({@code INVALID_GPA}). */
    public static final long INVALID_GFN = -1L;

    /** The reader-visible state, replaced as a whole so that one volatile read gives a consistent view. */
    private static final class State {
        final long seq;
        final int inProgress;
        final long start, end;

        State(long seq, int inProgress, long start, long end) {
            this.seq = seq;
            this.inProgress = inProgress;
            this.start = start;
            this.end = end;
        }
    }

    private final Memslots memslots;
    private final PageGeometry geometry;
    private volatile State state = new State(0, 0, INVALID_GFN, INVALID_GFN);
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition noActiveHva = lock.newCondition();
    private final List<Invalidation> activeHva = new ArrayList<>(); // guarded by lock
    private final List<InvalidationListener> listeners = new CopyOnWriteArrayList<>();
    private HvaIndex[] indexes = new HvaIndex[0]; // per address space, of its current set; guarded by lock

    /** Creates the notifier of {@code memslots} and makes memslot changes go through it. */
    public MmuNotifier(Memslots memslots) {
        this.memslots = memslots;
        this.geometry = memslots.geometry();
        memslots.installPublishGate(this::publishMemslots);
    }

    public Memslots memslots() {
        return memslots;
    }

    // ---------------------------------------------------------------- read side

    /** {@code mmu_invalidate_seq}: take it before looking anything up. One volatile read. */
    public long sequence() {
        return state.seq;
    }

    /** {@code mmu_invalidate_retry}: true if any invalidation is in progress or the sequence moved. */
    public boolean retry(long seqSnapshot) {
        // Loads made to compute the result must not drift past the state read (KVM has mmu_lock for this).
        VarHandle.loadLoadFence();
        State s = state;
        return s.inProgress != 0 || s.seq != seqSnapshot;
    }

    /**
     * {@code mmu_invalidate_retry_gfn}: true if an invalidation in progress covers {@code gfn} or the sequence
     * moved since {@code seqSnapshot}.
     */
    public boolean retryGfn(long gfn, long seqSnapshot) {
        VarHandle.loadLoadFence();
        State s = state;
        if (s.inProgress != 0) {
            if (s.start == INVALID_GFN) return true;
            if (gfn >= s.start && gfn < s.end) return true;
        }
        return s.seq != seqSnapshot;
    }

    /** {@code mmu_invalidate_in_progress}. */
    public int inProgress() {
        return state.inProgress;
    }

    /** {@code mmu_invalidate_range_start} (meaningful while {@link #inProgress()} is non-zero). */
    public long rangeStart() {
        return state.start;
    }

    /** {@code mmu_invalidate_range_end}, exclusive. */
    public long rangeEnd() {
        return state.end;
    }

    // ---------------------------------------------------------------- write side

    public void addListener(InvalidationListener l) {
        listeners.add(l);
    }

    public void removeListener(InvalidationListener l) {
        listeners.remove(l);
    }

    /**
     * {@code invalidate_range_start} for host virtual addresses {@code [hvaStart, hvaEnd)}; close the result
     * for {@code invalidate_range_end}. The range is converted to gfns through every address space's current
     * set (rounded out to whole pages).
     */
    public Invalidation invalidate(long hvaStart, long hvaEnd) {
        if (hvaStart < 0 || hvaEnd <= hvaStart) {
            throw new IllegalArgumentException("bad hva range 0x" + Long.toHexString(hvaStart) + "-0x"
                    + Long.toHexString(hvaEnd));
        }
        lock.lock();
        try {
            List<Invalidation.GfnRange> ranges = new ArrayList<>();
            long ps = geometry.pageSize();
            int shift = geometry.shift();
            for (int as = 0; as < memslots.addressSpaces(); as++) {
                MemslotSet set = memslots.current(as);
                for (Memslot m : slotsTouching(as, set, hvaStart, hvaEnd)) {
                    long u = m.userspaceAddr();
                    long uEnd = u + (m.npages() << shift);
                    long s = Math.max(hvaStart, u), e = Math.min(hvaEnd, uEnd);
                    if (s < e) {
                        ranges.add(new Invalidation.GfnRange(as, m.baseGfn() + ((s - u) >>> shift),
                                m.baseGfn() + ((e - u + ps - 1) >>> shift), m));
                    }
                }
            }
            Invalidation inv = new Invalidation(this, hvaStart, hvaEnd, ranges, null, true);
            activeHva.add(inv);
            beginLocked(inv);
            return inv;
        } finally {
            lock.unlock();
        }
    }

    /**
     * The slots of {@code set} whose hvas meet {@code [hvaStart, hvaEnd)}, in gfn order. KVM finds them in its
     * per-address-space hva interval tree; here a set is walked whole until it has answered about log2(n)
     * invalidations, then indexed by hva ({@link HvaIndex}, O(n log n) once per set), so a VMM that changes
     * slots between every invalidation pays at most twice the walk, and one that does not pays O(log n + k).
     */
    private List<Memslot> slotsTouching(int as, MemslotSet set, long hvaStart, long hvaEnd) {
        if (indexes.length <= as) indexes = java.util.Arrays.copyOf(indexes, memslots.addressSpaces());
        HvaIndex x = indexes[as];
        if (x == null || x.set != set) indexes[as] = x = new HvaIndex(set);
        return x.touching(hvaStart, hvaEnd, geometry.shift());
    }

    /** One set's slots by hva, built once the set has been walked log2(n) times; guarded by the notifier's lock. */
    private static final class HvaIndex {
        final MemslotSet set;
        private int walks;
        private Memslot[] byHva;   // sorted by userspaceAddr
        private long[] start, maxEnd; // maxEnd[i]: the highest hva end among byHva[0..i]

        HvaIndex(MemslotSet set) {
            this.set = set;
        }

        List<Memslot> touching(long s, long e, int shift) {
            List<Memslot> out = new ArrayList<>();
            int n = set.size();
            if (byHva == null && ++walks <= 32 - Integer.numberOfLeadingZeros(n)) {
                for (Memslot m : set.slots()) {
                    long u = m.userspaceAddr();
                    if (u < e && u + (m.npages() << shift) > s) out.add(m);
                }
                return out;
            }
            if (byHva == null) build(shift);
            int lo = 0, hi = n; // the first slot starting at or after e
            while (lo < hi) {
                int mid = (lo + hi) >>> 1;
                if (start[mid] < e) lo = mid + 1;
                else hi = mid;
            }
            for (int i = lo - 1; i >= 0 && maxEnd[i] > s; i--) {
                Memslot m = byHva[i];
                if (m.userspaceAddr() + (m.npages() << shift) > s) out.add(m);
            }
            if (out.size() > 1) out.sort(java.util.Comparator.comparingLong(Memslot::baseGfn));
            return out;
        }

        private void build(int shift) {
            byHva = set.slots().toArray(new Memslot[0]);
            java.util.Arrays.sort(byHva, java.util.Comparator.comparingLong(Memslot::userspaceAddr));
            start = new long[byHva.length];
            maxEnd = new long[byHva.length];
            long max = Long.MIN_VALUE;
            for (int i = 0; i < byHva.length; i++) {
                start[i] = byHva[i].userspaceAddr();
                max = Math.max(max, start[i] + (byHva[i].npages() << shift));
                maxEnd[i] = max;
            }
        }
    }

    /**
     * {@code invalidate_range_start} for guest frames {@code [gfnStart, gfnEnd)} directly (guest_memfd
     * conversions and hole punches, which KVM invalidates by gfn). Counted even where no slot maps them.
     */
    public Invalidation invalidateGfn(int addressSpace, long gfnStart, long gfnEnd) {
        if (gfnStart < 0 || gfnEnd <= gfnStart) {
            throw new IllegalArgumentException("bad gfn range 0x" + Long.toHexString(gfnStart) + "-0x"
                    + Long.toHexString(gfnEnd));
        }
        lock.lock();
        try {
            Invalidation inv = new Invalidation(this, -1, -1,
                    List.of(new Invalidation.GfnRange(addressSpace, gfnStart, gfnEnd, null)), null, false);
            beginLocked(inv);
            return inv;
        } finally {
            lock.unlock();
        }
    }

    /** kvm_mmu_invalidate_begin + range_add for each range, then the listeners. */
    private void beginLocked(Invalidation inv) {
        if (inv.affectsGuest()) {
            State s = state;
            long start = s.inProgress == 0 ? INVALID_GFN : s.start;
            long end = s.inProgress == 0 ? INVALID_GFN : s.end;
            for (Invalidation.GfnRange r : inv.ranges()) {
                if (start == INVALID_GFN) {
                    start = r.start();
                    end = r.end();
                } else {
                    start = Math.min(start, r.start());
                    end = Math.max(end, r.end());
                }
            }
            state = new State(s.seq, s.inProgress + 1, start, end);
            // The caller's changes to memory (plain stores included) must not become visible before the
            // in-progress state: a release store alone would let later stores move above it.
            VarHandle.fullFence();
        }
        try {
            for (InvalidationListener l : listeners) l.invalidateRangeStart(inv);
        } catch (RuntimeException | Error e) {
            endLocked(inv);
            throw e;
        }
    }

    /** Called by {@link Invalidation#close()}. */
    void end(Invalidation inv) {
        lock.lock();
        try {
            endLocked(inv);
        } finally {
            lock.unlock();
        }
    }

    /** kvm_mmu_invalidate_end: sequence first, then the in-progress count, as KVM orders them. */
    private void endLocked(Invalidation inv) {
        if (inv.ended) return;
        inv.ended = true;
        if (inv.affectsGuest()) {
            State s = state;
            state = new State(s.seq + 1, s.inProgress - 1, s.start, s.end);
        }
        RuntimeException failure = null;
        for (InvalidationListener l : listeners) {
            try {
                l.invalidateRangeEnd(inv);
            } catch (RuntimeException e) {
                if (failure == null) failure = e;
            }
        }
        if (inv.hvaDriven) {
            activeHva.remove(inv);
            if (activeHva.isEmpty()) noActiveHva.signalAll();
        }
        if (failure != null) throw failure;
    }

    /** The {@link Memslots.PublishGate}: waits for hva invalidations, invalidates what the change takes away. */
    private void publishMemslots(MemslotChange change, Runnable publish) {
        lock.lock();
        try {
            while (!activeHva.isEmpty()) {
                for (Invalidation inv : activeHva) {
                    if (inv.owner == Thread.currentThread()) {
                        throw new IllegalStateException("memslot change from inside this thread's open " + inv
                                + ": it would wait for itself");
                    }
                }
                noActiveHva.awaitUninterruptibly();
            }
            List<Invalidation.GfnRange> ranges = new ArrayList<>(2);
            Memslot old = change.old();
            switch (change.kind()) {
                case DELETE -> ranges.add(range(old));
                case MOVE -> {
                    ranges.add(range(old));
                    ranges.add(range(change.updated()));
                }
                case FLAGS_ONLY -> {
                    // Starting dirty logging: writable mappings and huge levels taken before are now wrong.
                    // Stopping it only allows more; nothing taken before becomes wrong.
                    if (!old.logsDirty() && change.updated().logsDirty()) ranges.add(range(old));
                }
                case CREATE -> { } // nothing mapped the new gfns; "no slot" answers are told by the generation
            }
            if (ranges.isEmpty()) {
                publish.run();
                return;
            }
            Invalidation inv = new Invalidation(this, old.userspaceAddr(),
                    old.userspaceAddr() + (old.npages() << geometry.shift()), ranges, change, false);
            beginLocked(inv);
            publish.run();
            endLocked(inv);
        } finally {
            lock.unlock();
        }
    }

    private static Invalidation.GfnRange range(Memslot m) {
        return new Invalidation.GfnRange(m.addressSpace(), m.baseGfn(), m.endGfn(), m);
    }
}
