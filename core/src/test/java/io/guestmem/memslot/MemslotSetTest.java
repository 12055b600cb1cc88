package io.guestmem.memslot;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

class MemslotSetTest {

    static List<PageGeometry> geometries() {
        return List.of(PageGeometry.K4, PageGeometry.K16, PageGeometry.K64);
    }

    /** The oracle: a linear walk over the slots. */
    static Memslot naive(List<Memslot> slots, long gfn) {
        for (Memslot m : slots) if (gfn >= m.baseGfn() && gfn < m.endGfn()) return m;
        return null;
    }

    /** Random non-overlapping layout: slot sizes and gaps drawn from [1, maxPages], ids shuffled. */
    static List<Memslot> randomLayout(Random r, int n, long maxPages, long firstGfn, long hvaBase, int shift) {
        List<Memslot> l = new ArrayList<>();
        long gfn = firstGfn;
        long hva = hvaBase;
        List<Integer> ids = new ArrayList<>();
        for (int i = 0; i < n; i++) ids.add(i * 3 + 1);
        java.util.Collections.shuffle(ids, r);
        for (int i = 0; i < n; i++) {
            long np = 1 + (long) (r.nextDouble() * r.nextDouble() * maxPages);
            int flags = r.nextInt(4) == 0 ? Memslot.READONLY : 0;
            l.add(new Memslot(0, ids.get(i), gfn, np, hva, flags, -1, 0));
            hva += (np + r.nextInt(3)) << shift;
            gfn += np + (r.nextBoolean() ? 0 : 1 + (long) (r.nextDouble() * maxPages));
        }
        return l;
    }

    static void checkAgainstOracle(MemslotSet set, List<Memslot> slots, Random r, long lookups) {
        PageGeometry g = set.geometry();
        long last = slots.isEmpty() ? 16 : slots.get(slots.size() - 1).endGfn() + 16;
        long first = slots.isEmpty() ? 0 : slots.get(0).baseGfn();
        for (long k = 0; k < lookups; k++) {
            long gfn;
            int pick = r.nextInt(10);
            if (pick == 0) gfn = Math.max(0, first - 1 - r.nextInt(4));
            else if (pick == 1 && !slots.isEmpty()) {
                Memslot m = slots.get(r.nextInt(slots.size()));
                gfn = r.nextBoolean() ? m.baseGfn() : m.endGfn() - r.nextInt(2);
            } else gfn = (long) (r.nextDouble() * last);
            Memslot want = naive(slots, gfn);
            Memslot got = set.findByGfn(gfn);
            assertEquals(want, got, "gfn 0x" + Long.toHexString(gfn) + " in " + set);
            long hva = set.gfnToHva(gfn);
            if (want == null) {
                assertEquals(MemslotSet.BAD_HVA, hva);
                assertEquals(-1, set.indexOf(gfn));
                assertEquals(MemslotSet.BAD_HVA, set.gpaToHva(g.address(gfn) + 5));
            } else {
                long expect = want.userspaceAddr() + ((gfn - want.baseGfn()) << g.shift());
                assertEquals(expect, hva);
                assertEquals(expect + 5, set.gpaToHva(g.address(gfn) + 5));
                assertEquals(want.readOnly() ? MemslotSet.RO_BAD_HVA : expect, set.gfnToHvaForWrite(gfn));
                int i = set.indexOf(gfn);
                assertSame(want, set.slotAt(i));
                assertEquals(want.baseGfn(), set.baseGfnAt(i));
                assertEquals(want.endGfn(), set.endGfnAt(i));
                assertEquals(want.flags(), set.flagsAt(i));
                assertEquals(expect, set.hvaAt(i, gfn));
            }
        }
        assertEquals(MemslotSet.BAD_HVA, set.gfnToHva(-1));
        assertEquals(MemslotSet.BAD_HVA, set.gfnToHva(Long.MIN_VALUE));
        assertEquals(MemslotSet.BAD_HVA, set.gfnToHva(Long.MAX_VALUE));
    }

    @Property(tries = 300)
    void randomLayoutsMatchTheOracle(@ForAll @IntRange(min = 0, max = 600) int n,
                                     @ForAll @IntRange(min = 1, max = 5000) int maxPages,
                                     @ForAll @IntRange(min = 0, max = 2) int geometry,
                                     @ForAll long seed) {
        PageGeometry g = geometries().get(geometry);
        Random r = new Random(seed);
        List<Memslot> slots = randomLayout(r, n, maxPages, r.nextInt(1 << 20), 0x7f0000000000L, g.shift());
        MemslotSet set = MemslotSet.of(g, 0, 7, slots);
        assertEquals(n, set.size());
        assertEquals(7, set.generation());
        checkAgainstOracle(set, slots, r, 2000);
        for (Memslot m : slots) assertSame(m, set.byId(m.id()));
        assertNull(set.byId(2)); // ids are 1 mod 3
    }

    /** The benchmark layout: 512 slots of 2 MiB with 1 MiB gaps. */
    @ParameterizedTest
    @MethodSource("geometries")
    void slots512WithGaps(PageGeometry g) {
        long slotPages = (2L << 20) >> g.shift(), gapPages = (1L << 20) >> g.shift();
        List<Memslot> slots = new ArrayList<>();
        for (int i = 0; i < 512; i++) {
            slots.add(new Memslot(0, i, (1L << 32 >> g.shift()) + i * (slotPages + gapPages), slotPages,
                    0x7f0000000000L + ((long) i << 22), 0, -1, 0));
        }
        MemslotSet set = MemslotSet.of(g, 0, 1, slots);
        checkAgainstOracle(set, slots, new Random(512), 200_000);
        assertTrue(set.directoryBuckets() <= 4 * 512, "directory " + set.directoryBuckets());
        assertEquals(0, set.mixedBuckets(), "the regular layout must answer every lookup from its bucket");
    }

    /** Many one-page slots packed in one bucket beside a far slot: the binary-search branch. */
    @ParameterizedTest
    @MethodSource("geometries")
    void crowdedBucketsUseSearch(PageGeometry g) {
        List<Memslot> slots = new ArrayList<>();
        for (int i = 0; i < 300; i++) slots.add(new Memslot(0, i, 2L * i, 1, 0x10000000L + ((long) i << g.shift()), 0, -1, 0));
        slots.add(new Memslot(0, 300, 1L << 36, 4, 0x40000000L, 0, -1, 0));
        MemslotSet set = MemslotSet.of(g, 0, 1, slots);
        assertTrue(set.mixedBuckets() > 0, "crowded layout must take the search branch");
        checkAgainstOracle(set, slots, new Random(3), 100_000);
        for (int i = 0; i < 600; i++) {
            assertEquals(i % 2 == 0 ? slots.get(i / 2) : null, set.findByGfn(i), "gfn " + i);
        }
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void emptyAndSingle(PageGeometry g) {
        MemslotSet empty = MemslotSet.empty(g, 1);
        assertEquals(-1, empty.indexOf(0));
        assertEquals(MemslotSet.BAD_HVA, empty.gfnToHva(0));
        assertTrue(empty.isEmpty());
        Memslot m = new Memslot(0, 5, 0x100, 0x10, 0x7000_0000_0000L, 0, -1, 0);
        MemslotSet one = MemslotSet.of(g, 0, 1, List.of(m));
        assertEquals(MemslotSet.BAD_HVA, one.gfnToHva(0xff));
        assertEquals(0x7000_0000_0000L, one.gfnToHva(0x100));
        assertEquals(0x7000_0000_0000L + (0xfL << g.shift()), one.gfnToHva(0x10f));
        assertEquals(MemslotSet.BAD_HVA, one.gfnToHva(0x110));
    }

    /**
     * The last-used cache is per set and only a hint: alternating lookups between slots, a miss between
     * hits, and a cached index never leaks a wrong answer for a gfn outside the cached slot.
     */
    @ParameterizedTest
    @MethodSource("geometries")
    void lastUsedCacheNeverAnswersWrong(PageGeometry g) {
        Memslot a = new Memslot(0, 0, 0, 16, 0x100000000L, 0, -1, 0);
        Memslot b = new Memslot(0, 1, 32, 16, 0x200000000L, 0, -1, 0);
        MemslotSet set = MemslotSet.of(g, 0, 1, List.of(a, b));
        assertSame(b, set.findByGfn(40));  // caches b
        assertSame(b, set.findByGfn(47));
        assertNull(set.findByGfn(48));      // just past the cached slot
        assertNull(set.findByGfn(31));      // just before it
        assertSame(a, set.findByGfn(15));   // switches to a
        assertNull(set.findByGfn(16));
        assertSame(b, set.findByGfn(32));
        // concurrent readers hammer the cache; every answer must stay right
        Thread[] ts = new Thread[4];
        java.util.concurrent.atomic.AtomicReference<Throwable> err = new java.util.concurrent.atomic.AtomicReference<>();
        for (int t = 0; t < ts.length; t++) {
            int seed = t;
            ts[t] = new Thread(() -> {
                try {
                    Random r = new Random(seed);
                    for (int k = 0; k < 200_000; k++) {
                        long gfn = r.nextInt(64);
                        Memslot want = gfn < 16 ? a : gfn >= 32 && gfn < 48 ? b : null;
                        assertSame(want, set.findByGfn(gfn));
                    }
                } catch (Throwable e) {
                    err.set(e);
                }
            });
            ts[t].start();
        }
        for (Thread t : ts) assertDoesNotTimeout(t);
        if (err.get() != null) throw new AssertionError(err.get());
    }

    private static void assertDoesNotTimeout(Thread t) {
        try {
            t.join(60_000);
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
        assertTrue(!t.isAlive(), "reader thread hung");
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void rejectsOverlapsDuplicatesAndForeignAddressSpace(PageGeometry g) {
        Memslot a = new Memslot(0, 0, 0, 16, 0, 0, -1, 0);
        assertThrows(IllegalArgumentException.class,
                () -> MemslotSet.of(g, 0, 1, List.of(a, new Memslot(0, 1, 15, 2, 0, 0, -1, 0))));
        assertThrows(IllegalArgumentException.class,
                () -> MemslotSet.of(g, 0, 1, List.of(a, new Memslot(0, 0, 100, 2, 0, 0, -1, 0))));
        assertThrows(IllegalArgumentException.class, () -> MemslotSet.of(g, 1, 1, List.of(a)));
    }
}
