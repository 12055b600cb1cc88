package io.guestmem.memslot;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.guestmem.KvmException;
import io.guestmem.sys.Errno;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * KVM's full complement of slots ({@link Memslots#DEFAULT_MAX_SLOTS}, 32764), built one change at a time as a
 * VMM would, and changed under concurrent readers. No timing here: the targets are in {@code MemslotUpdateBench}.
 */
class MemslotScaleTest {
    static final PageGeometry G = PageGeometry.K4;
    static final long SLOT = 2L << 20, GAP = 1L << 20, STRIDE = SLOT + GAP, HVA = 0x7f00_0000_0000L;
    static final long SLOT_PAGES = SLOT >>> 12, STRIDE_PAGES = STRIDE >>> 12;
    static final int N = Memslots.DEFAULT_MAX_SLOTS;

    /** Every slot's first and last gfn, the gfns around it, and the holes between slots. */
    static void checkEverySlot(MemslotSet set, List<Memslot> expected) {
        assertEquals(expected.size(), set.size());
        long total = 0, prevEnd = -1;
        for (Memslot m : expected) {
            total += m.npages();
            long first = m.baseGfn(), last = m.endGfn() - 1;
            assertSame(m, set.byId(m.id()));
            assertEquals(m.id(), set.indexOf(first), "first gfn of slot " + m.id());
            assertEquals(m.id(), set.indexOf(last), "last gfn of slot " + m.id());
            assertEquals(m.userspaceAddr(), set.gfnToHva(first));
            assertEquals(m.userspaceAddr() + ((last - first) << G.shift()), set.gfnToHva(last));
            assertEquals(m.userspaceAddr() + ((last - first) << G.shift()) + 4095, set.gpaToHva(G.address(last) + 4095));
            assertEquals(m.readOnly() ? MemslotSet.RO_BAD_HVA : m.userspaceAddr(), set.gfnToHvaForWrite(first));
            assertSame(m, set.slotAt(set.indexOf(first)));
            if (first - 1 != prevEnd - 1 || prevEnd < 0) { // a hole before this slot
                if (first > 0) {
                    assertEquals(-1, set.indexOf(first - 1), "gfn before slot " + m.id());
                    assertEquals(MemslotSet.BAD_HVA, set.gfnToHva(first - 1));
                }
                if (prevEnd >= 0) {
                    assertEquals(-1, set.indexOf(prevEnd), "first gfn of the hole before slot " + m.id());
                    assertEquals(MemslotSet.BAD_HVA, set.gfnToHva(prevEnd));
                    assertNull(set.findByGfn((prevEnd + first) / 2));
                }
            }
            prevEnd = m.endGfn();
        }
        if (prevEnd >= 0) {
            assertEquals(MemslotSet.BAD_HVA, set.gfnToHva(prevEnd));
            assertEquals(MemslotSet.BAD_HVA, set.gfnToHva(prevEnd + 12345));
        }
        assertEquals(total, set.totalPages());
        assertEquals(expected, List.copyOf(set.slots()));
        for (int k = 0; k < expected.size(); k += Math.max(1, expected.size() / 97)) {
            assertSame(expected.get(k), set.slots().get(k), "position " + k);
        }
        assertEquals(MemslotSet.BAD_HVA, set.gfnToHva(-1));
        assertEquals(MemslotSet.BAD_HVA, set.gfnToHva(Long.MAX_VALUE));
    }

    static Memslots writer() {
        return new Memslots(Memslots.Config.of(G));
    }

    @Test
    void allSlotsOneChangeAtATimeInGpaOrder() {
        Memslots ms = writer();
        List<Memslot> want = new ArrayList<>();
        MemslotSet mid = null;
        List<Memslot> midWant = null;
        for (int i = 0; i < N; i++) {
            ms.setMemslot(0, i, 0, i * STRIDE, SLOT, HVA + i * STRIDE);
            want.add(ms.current().byId(i));
            if (i == N / 2) {
                mid = ms.current();
                midWant = List.copyOf(want);
            }
        }
        MemslotSet set = ms.current();
        assertEquals(N, set.generation());
        checkEverySlot(set, want);
        assertEquals(0, set.mixedBuckets(), "2 MiB slots with 1 MiB gaps: every bucket is one slot or one gap");
        assertTrue(set.leafCount() >= N / MemslotSet.LEAF_MAX);
        // one more id is refused as KVM refuses it; an overlap is EEXIST; a delete and a re-create work
        assertErrno(Errno.EINVAL, () -> ms.setMemslot(0, N, 0, (long) N * STRIDE, SLOT, HVA + N * STRIDE));
        assertErrno(Errno.EEXIST, () -> ms.setMemslot(0, 5, 0, 7 * STRIDE + GAP, SLOT, HVA + 5 * STRIDE));
        ms.deleteMemslot(0, 5);
        assertNull(ms.current().findByGfn(5 * STRIDE_PAGES));
        ms.setMemslot(0, 5, 0, 5 * STRIDE, SLOT, HVA + 5 * STRIDE);
        checkEverySlot(ms.current(), want.stream().map(m -> m.id() == 5 ? ms.current().byId(5) : m).toList());
        // the set published halfway is unchanged by everything after it
        checkEverySlot(mid, midWant);
    }

    @Test
    void allSlotsInRandomOrderThenRandomMovesAndDeletes() {
        Random r = new Random(32764);
        Memslots ms = writer();
        List<Integer> positions = new ArrayList<>();
        for (int i = 0; i < N; i++) positions.add(i);
        Collections.shuffle(positions, r);
        // slot i at a random position of the 32764: inserts land in the middle of leaves and buckets
        for (int i = 0; i < N; i++) {
            long p = positions.get(i);
            ms.setMemslot(0, i, i % 7 == 0 ? Memslot.READONLY : 0, p * STRIDE, SLOT, HVA + p * STRIDE);
        }
        TreeMap<Long, Memslot> model = new TreeMap<>();
        for (Memslot m : ms.current().slots()) model.put(m.baseGfn(), m);
        checkEverySlot(ms.current(), List.copyOf(model.values()));

        // moves into the free positions above, deletes, re-creates; checked against the model as it goes
        long free = N;
        List<Integer> gone = new ArrayList<>();
        for (int step = 0; step < 20_000; step++) {
            int kind = r.nextInt(3);
            if (kind == 0) {
                int id = r.nextInt(N);
                Memslot m = ms.current().byId(id);
                if (m == null) continue;
                long to = r.nextBoolean() ? free++ : m.baseGfn() / STRIDE_PAGES; // a move, or to where it is
                MemslotChange c = ms.setMemslot(0, id, m.flags(), to * STRIDE, SLOT, m.userspaceAddr());
                model.remove(m.baseGfn());
                Memslot now = ms.current().byId(id);
                model.put(now.baseGfn(), now);
                if (c != null) assertEquals(MemslotChange.Kind.MOVE, c.kind());
            } else if (kind == 1 && model.size() > 1000) {
                int id = r.nextInt(N);
                Memslot m = ms.current().byId(id);
                if (m == null) continue;
                ms.deleteMemslot(0, id);
                model.remove(m.baseGfn());
                gone.add(id);
            } else if (!gone.isEmpty()) {
                int id = gone.remove(gone.size() - 1);
                long p = free++;
                ms.setMemslot(0, id, 0, p * STRIDE, SLOT, HVA + p * STRIDE);
                Memslot now = ms.current().byId(id);
                model.put(now.baseGfn(), now);
            }
            if (step % 2000 == 0) spotCheck(ms.current(), model, r);
        }
        checkEverySlot(ms.current(), List.copyOf(model.values()));
        // deleting all but a few shrinks the directory and merges leaves; what is left still answers right
        for (Memslot m : List.copyOf(model.values())) {
            if (r.nextInt(100) != 0) {
                ms.deleteMemslot(0, m.id());
                model.remove(m.baseGfn());
            }
        }
        checkEverySlot(ms.current(), List.copyOf(model.values()));
        assertTrue(ms.current().leafCount() <= model.size() / 8 + 2, ms.current().leafCount() + " leaves for " + model.size());
    }

    /** Random gfns (in slots, in holes, at edges) against the model. */
    static void spotCheck(MemslotSet set, TreeMap<Long, Memslot> model, Random r) {
        assertEquals(model.size(), set.size());
        long top = model.isEmpty() ? 1 : model.lastEntry().getValue().endGfn() + 10;
        for (int k = 0; k < 5000; k++) {
            long gfn = (long) (r.nextDouble() * top);
            Map.Entry<Long, Memslot> e = model.floorEntry(gfn);
            Memslot want = e != null && e.getValue().containsGfn(gfn) ? e.getValue() : null;
            assertSame(want, set.findByGfn(gfn), "gfn " + gfn);
            assertEquals(want == null ? MemslotSet.BAD_HVA : want.userspaceAddr() + ((gfn - want.baseGfn()) << G.shift()),
                    set.gfnToHva(gfn));
        }
    }

    /** Small slots of every size and spacing, many per bucket, in random order: the directory's edits against a model. */
    @Test
    void smallSlotsOfMixedSizesAgainstTheModel() {
        Random r = new Random(7);
        Memslots ms = writer();
        TreeMap<Long, Memslot> model = new TreeMap<>();
        long hva = HVA;
        for (int step = 0; step < 30_000; step++) {
            int id = r.nextInt(4000);
            Memslot m = ms.current().byId(id);
            if (m != null && r.nextInt(3) == 0) {
                ms.deleteMemslot(0, id);
                model.remove(m.baseGfn());
                continue;
            }
            long pages = r.nextInt(4) == 0 ? 1 + r.nextInt(5000) : 1 + r.nextInt(8);
            long gfn = r.nextInt(1 << 22);
            if (r.nextInt(50) == 0) gfn += 1L << 34; // a far slot: the directory's span grows
            try {
                if (m == null) {
                    ms.setMemslot(0, id, 0, G.address(gfn), pages << 12, hva);
                    hva += pages << 12;
                } else {
                    ms.setMemslot(0, id, m.flags(), G.address(gfn), m.npages() << 12, m.userspaceAddr()); // a move
                }
            } catch (KvmException e) {
                assertEquals(Errno.EEXIST, e.errno());
                Map.Entry<Long, Memslot> below = model.lowerEntry(gfn + (m == null ? pages : m.npages()));
                assertTrue(below != null, "EEXIST without an overlapping slot");
                continue;
            }
            if (m != null) model.remove(m.baseGfn());
            Memslot now = ms.current().byId(id);
            model.put(now.baseGfn(), now);
            if (step % 3000 == 0) spotCheck(ms.current(), model, r);
        }
        checkEverySlot(ms.current(), List.copyOf(model.values()));
        spotCheck(ms.current(), model, r);
    }

    /**
     * Readers see consistent, immutable sets while a writer creates, moves and deletes slots: every set a reader
     * gets must be exactly the state the writer's model had after that generation (count, total pages, and a hash
     * of every (id, base gfn) pair in gfn order), its lookups must agree with its own slot list, and generations
     * never go backwards for one reader.
     */
    @Test
    void concurrentReadersAlwaysSeeAConsistentSet() throws Exception {
        int changes = 6000, ids = 3000;
        Random r = new Random(99);
        // The writer's plan and, per generation, the state it leads to (computed first, single-threaded).
        record Op(int id, long position, boolean delete) {}
        List<Op> plan = new ArrayList<>();
        long[] count = new long[changes + 1], hash = new long[changes + 1];
        hash[0] = hashOf(new TreeMap<>());
        {
            TreeMap<Long, Integer> at = new TreeMap<>();
            Map<Integer, Long> where = new java.util.HashMap<>();
            while (plan.size() < changes) {
                int id = r.nextInt(ids);
                Long p = where.get(id);
                Op op;
                if (p != null && r.nextInt(3) == 0) op = new Op(id, -1, true);
                else {
                    long to = r.nextInt(2 * ids);
                    if (at.containsKey(to)) continue; // would be EEXIST: not in the plan
                    op = new Op(id, to, false);
                }
                if (p != null) at.remove(p);
                if (op.delete()) where.remove(id);
                else {
                    at.put(op.position(), id);
                    where.put(id, op.position());
                }
                plan.add(op);
                count[plan.size()] = at.size();
                hash[plan.size()] = hashOf(at);
            }
        }
        Memslots ms = writer();
        AtomicBoolean stop = new AtomicBoolean();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicLong reads = new AtomicLong();
        List<Thread> readers = new ArrayList<>();
        for (int t = 0; t < 2; t++) {
            int seed = t;
            readers.add(new Thread(() -> {
                Random rr = new Random(seed);
                long lastGen = 0;
                try {
                    while (!stop.get()) {
                        MemslotSet set = ms.current();
                        long gen = set.generation();
                        if (gen < lastGen) fail("generation went back from " + lastGen + " to " + gen);
                        lastGen = gen;
                        TreeMap<Long, Integer> seen = new TreeMap<>();
                        long pages = 0, prevEnd = -1;
                        for (Memslot m : set.slots()) {
                            if (m.baseGfn() < prevEnd) fail("slots out of order or overlapping at gen " + gen);
                            prevEnd = m.endGfn();
                            seen.put(m.baseGfn() / STRIDE_PAGES, m.id());
                            pages += m.npages();
                        }
                        assertEquals(count[(int) gen], set.size(), "size at gen " + gen);
                        assertEquals(count[(int) gen], seen.size());
                        assertEquals(hash[(int) gen], hashOf(seen), "slots at gen " + gen);
                        assertEquals(pages, set.totalPages());
                        for (int k = 0; k < 200; k++) {
                            long gfn = (long) (rr.nextDouble() * 2 * ids * STRIDE_PAGES);
                            Map.Entry<Long, Integer> e = seen.floorEntry(gfn / STRIDE_PAGES);
                            boolean in = e != null && e.getKey() == gfn / STRIDE_PAGES && gfn % STRIDE_PAGES < SLOT_PAGES;
                            Memslot m = set.findByGfn(gfn);
                            if (!in) {
                                assertNull(m, "gfn " + gfn + " at gen " + gen);
                                assertEquals(MemslotSet.BAD_HVA, set.gfnToHva(gfn));
                            } else {
                                assertEquals((int) e.getValue(), m.id(), "gfn " + gfn + " at gen " + gen);
                                assertSame(m, set.byId(m.id()));
                                assertEquals(m.userspaceAddr() + ((gfn - m.baseGfn()) << 12), set.gfnToHva(gfn));
                            }
                        }
                        reads.incrementAndGet();
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }, "memslot-reader-" + t));
        }
        readers.forEach(Thread::start);
        try {
            for (Op op : plan) {
                if (failure.get() != null) break;
                if (op.delete()) ms.deleteMemslot(0, op.id());
                else {
                    Memslot m = ms.current().byId(op.id());
                    long hva = m != null ? m.userspaceAddr() : HVA + op.id() * STRIDE;
                    ms.setMemslot(0, op.id(), 0, op.position() * STRIDE, SLOT, hva);
                }
                Thread.yield(); // let the readers see many of the generations
            }
        } finally {
            stop.set(true);
            for (Thread t : readers) t.join(60_000);
        }
        if (failure.get() != null) throw new AssertionError(failure.get());
        assertEquals(changes, ms.current().generation());
        assertTrue(reads.get() > 0);
        System.out.println("MemslotScaleTest: " + reads.get() + " consistent sets read during " + changes + " changes");
    }

    static long hashOf(TreeMap<Long, Integer> at) {
        long h = 1;
        for (Map.Entry<Long, Integer> e : at.entrySet()) h = h * 1_000_003L + e.getKey() * 65_537L + e.getValue();
        return h;
    }

    static void assertErrno(Errno want, Runnable r) {
        try {
            r.run();
            fail("expected " + want);
        } catch (KvmException e) {
            assertEquals(want, e.errno());
        }
    }
}
