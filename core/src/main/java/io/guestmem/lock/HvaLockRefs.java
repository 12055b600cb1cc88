package io.guestmem.lock;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * How many locked slots hold each host virtual address range mlocked. mlock is not counted by the kernel (one
 * munlock undoes any number of mlocks), whereas KVM's pins are: two slots aliasing the same hva range must
 * not unlock each other's pages. Not thread-safe: used under {@link MemslotLock}'s operation lock.
 */
final class HvaLockRefs {
    /** Boundary -> count of the segment starting there (until the next key). Count 0 segments are removed. */
    private final TreeMap<Long, Integer> bounds = new TreeMap<>();

    /** The parts of {@code r} no slot holds yet: what a new lock has to mlock. */
    List<HvaRange> unheld(HvaRange r) {
        return parts(r, false);
    }

    /** The parts of {@code r} some slot holds. */
    List<HvaRange> held(HvaRange r) {
        return parts(r, true);
    }

    /** Adds one hold on {@code r}. */
    void hold(HvaRange r) {
        adjust(r, +1);
    }

    /** Drops one hold on {@code r}; returns the parts no slot holds any more (to munlock). */
    List<HvaRange> release(HvaRange r) {
        adjust(r, -1);
        return unheld(r);
    }

    boolean isEmpty() {
        return bounds.isEmpty();
    }

    private List<HvaRange> parts(HvaRange r, boolean heldParts) {
        List<HvaRange> out = new ArrayList<>();
        long pos = r.start();
        while (pos < r.end()) {
            long next = nextBoundary(pos, r.end());
            if ((countAt(pos) != 0) == heldParts) append(out, new HvaRange(pos, next));
            pos = next;
        }
        return out;
    }

    private int countAt(long addr) {
        Map.Entry<Long, Integer> e = bounds.floorEntry(addr);
        return e == null ? 0 : e.getValue();
    }

    private long nextBoundary(long addr, long limit) {
        Long k = bounds.higherKey(addr);
        return k == null ? limit : Math.min(k, limit);
    }

    private void adjust(HvaRange r, int delta) {
        long start = r.start(), end = r.end();
        // Split at both ends so the segments inside [start, end) can be changed independently.
        bounds.put(end, countAt(end));
        bounds.put(start, countAt(start));
        for (Map.Entry<Long, Integer> e : bounds.subMap(start, true, end, false).entrySet()) {
            int c = e.getValue() + delta;
            if (c < 0) throw new IllegalStateException("hva lock count below zero at 0x" + Long.toHexString(e.getKey()));
            e.setValue(c);
        }
        // Coalesce: drop boundaries that do not change the count (zero-count runs disappear).
        List<Long> redundant = new ArrayList<>();
        int prev = 0;
        for (Map.Entry<Long, Integer> e : bounds.entrySet()) {
            if (e.getValue() == prev) redundant.add(e.getKey());
            prev = e.getValue();
        }
        for (Long k : redundant) bounds.remove(k);
    }

    /** Appends {@code r}, merging it with the last range when they touch. */
    static void append(List<HvaRange> out, HvaRange r) {
        int last = out.size() - 1;
        if (last >= 0 && out.get(last).precedes(r)) out.set(last, out.get(last).join(r));
        else out.add(r);
    }
}
