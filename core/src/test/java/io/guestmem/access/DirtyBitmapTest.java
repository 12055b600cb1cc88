package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.BitSet;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;

/** The sparse dirty bitmap against a plain model: the same pages, however harvested, and nothing lost in a race. */
class DirtyBitmapTest {

    @Test
    void randomMarksAndHarvestsAgreeWithAModel() {
        Random rnd = new Random(42);
        for (long npages : new long[] {1, 63, 64, 65, 32768 * 64 - 1, 32768 * 64 + 1, 5_000_000}) {
            DirtyBitmap b = new DirtyBitmap(npages);
            for (int round = 0; round < 6; round++) {
                BitSet model = new BitSet();
                int marks = rnd.nextInt(200);
                for (int k = 0; k < marks; k++) {
                    long p = (long) (rnd.nextDouble() * npages);
                    if (rnd.nextBoolean()) {
                        b.mark(p);
                        model.set((int) p);
                    } else {
                        long n = 1 + rnd.nextInt((int) Math.min(300, npages - p));
                        b.markRange(p, n);
                        model.set((int) p, (int) (p + n));
                    }
                }
                assertEquals(model.cardinality(), b.count());
                long[] dense = new long[DirtyBitmap.wordsFor(npages)];
                long[] want = java.util.Arrays.copyOf(model.toLongArray(), dense.length);
                if (round % 2 == 0) {
                    SparseWords w = b.collect();
                    assertArrayEquals(want, w.dense(dense.length), npages + " pages, round " + round);
                    assertEquals(model.cardinality(), w.count());
                    for (int k = 0; k < w.words(); k++) assertTrue(w.bits(k) != 0, "only non-zero words kept");
                } else {
                    java.util.Arrays.fill(dense, -1L); // stale contents of the caller's array are overwritten
                    assertEquals(model.cardinality(), b.getAndClear(dense));
                    assertArrayEquals(want, dense, npages + " pages, round " + round);
                }
                assertEquals(0, b.count(), "a harvest clears");
                assertEquals(0, b.collect().words());
            }
        }
    }

    @Test
    void aLargeSlotCostsWhatIsWritten() {
        DirtyBitmap b = new DirtyBitmap(1L << 28); // 1 TiB of 4 KiB pages: 32 MiB dense
        assertEquals(0, b.chunksAllocated());
        for (long p = 0; p < 10; p++) b.mark(p * (1L << 24));
        assertEquals(10, b.chunksAllocated());
        SparseWords w = b.collect();
        assertEquals(10, w.words());
        assertEquals(10, w.count());
        assertEquals(1L << 18, w.index(1), "page 2^24 is word 2^18");
    }

    /** Writers mark while a collector harvests: the union of the harvests is every mark, each exactly once. */
    @Test
    void marksRacingHarvestsAreNeverLost() throws Exception {
        long npages = 1L << 22;
        DirtyBitmap b = new DirtyBitmap(npages);
        int writers = 2, perWriter = 200_000;
        BitSet[] marked = new BitSet[writers];
        BitSet harvested = new BitSet();
        AtomicBoolean done = new AtomicBoolean();
        Thread[] t = new Thread[writers];
        for (int i = 0; i < writers; i++) {
            int id = i;
            marked[i] = new BitSet();
            t[i] = new Thread(() -> {
                Random r = new Random(id);
                for (int k = 0; k < perWriter; k++) {
                    // writer i owns pages = i mod writers: a page marked twice between harvests counts once
                    long p = (r.nextInt((int) (npages / writers)) * (long) writers) + id;
                    b.mark(p);
                    marked[id].set((int) p);
                }
            });
            t[i].start();
        }
        Thread collector = new Thread(() -> {
            while (!done.get()) harvest(b, harvested);
        });
        collector.start();
        for (Thread x : t) x.join();
        done.set(true);
        collector.join();
        harvest(b, harvested);
        BitSet all = new BitSet();
        for (BitSet m : marked) all.or(m);
        assertEquals(all, harvested, "every marked page was harvested");
    }

    private static void harvest(DirtyBitmap b, BitSet into) {
        SparseWords w = b.collect();
        for (int k = 0; k < w.words(); k++) {
            long v = w.bits(k);
            while (v != 0) {
                into.set((w.index(k) << 6) + Long.numberOfTrailingZeros(v));
                v &= v - 1;
            }
        }
    }
}
