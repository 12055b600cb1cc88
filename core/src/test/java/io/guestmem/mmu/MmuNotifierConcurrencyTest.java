package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Mman;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * Readers translate gfns and read the long at the start of the page, on real memory, while one writer
 * replaces pages behind hvas (mmap MAP_FIXED of a fresh anonymous page, then a new value, inside an
 * invalidation) and moves slots. Every reader result that passes {@code retryGfn} must equal what the writer
 * says gfn held at the reader's sequence snapshot.
 */
@Timeout(300)
class MmuNotifierConcurrencyTest {

    static final int SLOTS = 8, PAGES_PER_SLOT = 4, PAGES = SLOTS * PAGES_PER_SLOT;
    static final int GFNS = 128;             // slot positions: multiples of 4 in [0, 128)
    static final int OPS = 4000;
    static final int READERS = 2;
    static final int MAX_RESULTS = 2_000_000;
    static final long NO_SLOT = -1;

    @Test
    void resultsThatPassRetryAreNeverStale() throws Exception {
        PageGeometry g = PageGeometry.host();
        long ps = g.pageSize();
        long base = Mman.mmap(0, PAGES * ps, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        try {
            MemorySegment mem = MemorySegment.ofAddress(base).reinterpret(PAGES * ps);
            Memslots ms = new Memslots(Memslots.Config.of(g));
            MmuNotifier n = new MmuNotifier(ms);

            // the writer's model: where each slot sits and what each page holds
            long[] slotGfn = new long[SLOTS];
            long[] pageValue = new long[PAGES];
            for (int p = 0; p < PAGES; p++) {
                pageValue[p] = 1_000_000 + p;
                mem.set(ValueLayout.JAVA_LONG, p * ps, pageValue[p]);
            }
            for (int s = 0; s < SLOTS; s++) {
                slotGfn[s] = 8L * s; // gaps of 4 gfns between slots
                ms.setMemslot(0, s, 0, g.address(slotGfn[s]), PAGES_PER_SLOT * ps, base + s * PAGES_PER_SLOT * ps);
            }
            long seq0 = n.sequence();
            long[][] expected = new long[OPS + 1][]; // expected[k]: gfn -> value at sequence seq0 + k
            expected[0] = view(slotGfn, pageValue);

            AtomicBoolean done = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            long[][] resSeq = new long[READERS][MAX_RESULTS], resVal = new long[READERS][MAX_RESULTS];
            int[][] resGfn = new int[READERS][MAX_RESULTS];
            int[] passed = new int[READERS];
            long[] rejected = new long[READERS];
            Thread[] readers = new Thread[READERS];
            for (int r = 0; r < READERS; r++) {
                int id = r;
                readers[r] = new Thread(() -> {
                    try {
                        Random rnd = new Random(id);
                        int k = 0;
                        while (!done.get() && k < MAX_RESULTS) {
                            int gfn = rnd.nextInt(GFNS);
                            long seq = n.sequence();                   // snapshot first,
                            MemslotSet set = ms.current();             // then the slots,
                            long hva = set.gfnToHva(gfn);
                            long v = hva == MemslotSet.BAD_HVA ? NO_SLOT
                                    : mem.get(ValueLayout.JAVA_LONG, hva - base); // then the memory
                            if (n.retryGfn(gfn, seq)) {
                                rejected[id]++;
                                continue;
                            }
                            if ((rnd.nextInt() & 15) != 0) continue; // keep 1 in 16, so the buffers last the run
                            resSeq[id][k] = seq;
                            resGfn[id][k] = gfn;
                            resVal[id][k] = v;
                            k++;
                        }
                        passed[id] = k;
                    } catch (Throwable t) {
                        failure.compareAndSet(null, t);
                    }
                }, "reader-" + r);
                readers[r].start();
            }

            Random rnd = new Random(42);
            long nextValue = 2_000_000;
            int moves = 0;
            for (int op = 1; op <= OPS; op++) {
                long before = n.sequence();
                if (rnd.nextInt(4) != 0) {
                    int p = rnd.nextInt(PAGES);
                    long hva = base + p * ps;
                    try (Invalidation inv = n.invalidate(hva, hva + ps)) {
                        // a fresh page replaces the old one atomically (never unmapped: readers may touch it)
                        Mman.mmap(hva, ps, Mman.PROT_READ | Mman.PROT_WRITE,
                                Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS | Mman.MAP_FIXED, -1, 0);
                        pageValue[p] = nextValue++;
                        mem.set(ValueLayout.JAVA_LONG, p * ps, pageValue[p]);
                    }
                } else {
                    int s = rnd.nextInt(SLOTS);
                    while (true) {
                        long to = 4L * rnd.nextInt(GFNS / 4 - 1);
                        if (to == slotGfn[s]) continue;
                        try {
                            ms.setMemslot(0, s, 0, g.address(to), PAGES_PER_SLOT * ps, base + s * PAGES_PER_SLOT * ps);
                            slotGfn[s] = to;
                            moves++;
                            break;
                        } catch (KvmException e) {
                            assertEquals(Errno.EEXIST, e.errno());
                        }
                    }
                }
                assertEquals(before + 1, n.sequence(), "each operation is exactly one invalidation");
                expected[op] = view(slotGfn, pageValue);
            }
            done.set(true);
            for (Thread t : readers) t.join();
            if (failure.get() != null) throw new AssertionError(failure.get());

            long checked = 0;
            for (int r = 0; r < READERS; r++) {
                for (int k = 0; k < passed[r]; k++) {
                    int idx = (int) (resSeq[r][k] - seq0);
                    long want = expected[idx][resGfn[r][k]];
                    if (want != resVal[r][k]) {
                        throw new AssertionError("reader " + r + " result " + k + ": gfn " + resGfn[r][k] + " at seq "
                                + resSeq[r][k] + " read " + resVal[r][k] + " but the writer had " + want);
                    }
                    checked++;
                }
            }
            System.out.printf("concurrency: %d ops (%d moves), %d results passed retry and were checked, %d retried,"
                    + " readers still running at the end: %b%n", OPS, moves, checked, rejected[0] + rejected[1],
                    passed[0] < MAX_RESULTS && passed[1] < MAX_RESULTS);
            assertTrue(checked > 10_000, "readers made too little progress to prove anything: " + checked);
            assertTrue(moves > 100, "moves " + moves);
        } finally {
            Mman.munmap(base, PAGES * ps);
        }
    }

    /** gfn -> value the writer's model says a reader must see there. */
    private static long[] view(long[] slotGfn, long[] pageValue) {
        long[] v = new long[GFNS];
        java.util.Arrays.fill(v, NO_SLOT);
        for (int s = 0; s < SLOTS; s++) {
            for (int i = 0; i < PAGES_PER_SLOT; i++) v[(int) slotGfn[s] + i] = pageValue[s * PAGES_PER_SLOT + i];
        }
        return v;
    }
}
