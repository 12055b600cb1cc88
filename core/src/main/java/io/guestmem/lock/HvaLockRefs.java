package io.guestmem.lock;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * How many locked slots hold each host virtual address range mlocked. mlock is not counted by the kernel (one
 * munlock undoes any number of mlocks), whereas KVM's pins are: two slots aliasing the same hva range must
 * not unlock each other's pages. Ranges are {@code [start, end)} byte addresses, page aligned. Not thread-safe:
 * used under {@link MemslotLock}'s operation lock.
 */
final class HvaLockRefs {
    /** Boundary -> count of the segment starting there (until the next key). Count 0 segments are removed. */
    private final TreeMap<Long, Integer> bounds = new TreeMap<>();

    /** The parts of {@code [start, end)} no slot holds yet: what a new lock has to mlock. */
    List<long[]> unheld(long start, long end) {
        List<long[]> out = new ArrayList<>();
        long pos = start;
        while (pos < end) {
            int c = countAt(pos);
            long next = nextBoundary(pos, end);
            if (c == 0) add(out, pos, next);
            pos = next;
        }
        return out;
    }

    /** The parts of {@code [start, end)} some slot holds. */
    List<long[]> held(long start, long end) {
        List<long[]> out = new ArrayList<>();
        long pos = start;
        while (pos < end) {
            long next = nextBoundary(pos, end);
            if (countAt(pos) != 0) add(out, pos, next);
            pos = next;
        }
        return out;
    }

    /** Adds one hold on {@code [start, end)}. */
    void hold(long start, long end) {
        adjust(start, end, +1);
    }

    /** Drops one hold on {@code [start, end)}; returns the parts no slot holds any more (to munlock). */
    List<long[]> release(long start, long end) {
        adjust(start, end, -1);
        return unheld(start, end);
    }

    boolean isEmpty() {
        return bounds.isEmpty();
    }

    private int countAt(long addr) {
        Map.Entry<Long, Integer> e = bounds.floorEntry(addr);
        return e == null ? 0 : e.getValue();
    }

    private long nextBoundary(long addr, long limit) {
        Long k = bounds.higherKey(addr);
        return k == null ? limit : Math.min(k, limit);
    }

    private void adjust(long start, long end, int delta) {
        if (start >= end) return;
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

    private static void add(List<long[]> out, long s, long e) {
        if (!out.isEmpty() && out.get(out.size() - 1)[1] == s) out.get(out.size() - 1)[1] = e;
        else out.add(new long[] {s, e});
    }
}
