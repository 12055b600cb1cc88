package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.sys.Mman;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AutoClose;
import org.junit.jupiter.api.Test;

/**
 * Translators (sequence → follow_pfn → retry check) race remappers that change what the slot's pages map
 * (MADV_DONTNEED + re-touch, munmap-free mmap MAP_FIXED of a fresh page + touch), always inside the notifier's
 * invalidation. A result that passes the retry check must equal pagemap read right after, still under the same
 * sequence: the count of those that do not (stale) must be 0.
 */
class RetryConcurrencyTest {
    @AutoClose // unmaps its regions and closes its readers after each test
    private final Fixture f = new Fixture();
    private static final long PAGE = Fixture.PAGE;


    @Test
    void noResultThatPassesTheRetryCheckIsStale() throws Exception {
        long[] c = race(true);
        assertEquals(0, c[2], "results that passed the retry check disagreed with pagemap");
    }

    /**
     * The control: the same race with the remapper going behind the notifier's back. The check must now catch
     * stale results — proof that the main test can fail.
     */
    @Test
    void behindTheNotifiersBackStaleResultsAreCaught() throws Exception {
        long[] c = race(false);
        assertTrue(c[2] > 0, "no stale result caught although the notifier was bypassed");
    }

    /** Returns {checked, retried, stale}. */
    private long[] race(boolean throughNotifier) throws Exception {
        int pages = 32;
        HostRegion r = f.own(HostRegion.anonymous(pages * PAGE).create());
        MemorySegment seg = r.segment();
        for (int i = 0; i < pages; i++) seg.set(ValueLayout.JAVA_BYTE, i * PAGE, (byte) 1);
        Memslot s = f.slot(r, 0);
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong checked = new AtomicLong(), retried = new AtomicLong(), stale = new AtomicLong(),
                remaps = new AtomicLong(), errors = new AtomicLong();
        List<Throwable> failures = new ArrayList<>();
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < 2; t++) {
            threads.add(Thread.ofPlatform().name("translator-" + t).start(() -> {
                ThreadLocalRandom rnd = ThreadLocalRandom.current();
                try {
                    while (!stop.get()) {
                        long gfn = s.baseGfn() + rnd.nextInt(pages);
                        FollowPfnRequest req = rnd.nextBoolean() ? FollowPfnRequest.write(gfn)
                                : FollowPfnRequest.read(gfn).withMapWritable(true);
                        FollowPfnResult res = f.fp.follow(req);
                        try {
                            if (f.notifier.retryGfn(gfn, res.sequence())) {
                                retried.incrementAndGet();
                                continue;
                            }
                            if (res.isError()) { // passed the check yet failed: must not happen here
                                errors.incrementAndGet();
                                continue;
                            }
                            long pm = f.pagemapPfn(res.hva());
                            if (f.notifier.retryGfn(gfn, res.sequence())) {
                                retried.incrementAndGet();
                                continue;
                            }
                            checked.incrementAndGet();
                            if (pm != res.pfn()) {
                                stale.incrementAndGet();
                                if (throughNotifier) System.out.println("STALE: " + res + " but pagemap says 0x" + Long.toHexString(pm));
                            }
                        } finally {
                            f.fp.releaseFaultinPage(res, false, false);
                        }
                    }
                } catch (Throwable e) {
                    synchronized (failures) {
                        failures.add(e);
                    }
                }
            }));
        }
        threads.add(Thread.ofPlatform().name("remapper").start(() -> {
            ThreadLocalRandom rnd = ThreadLocalRandom.current();
            try {
                while (!stop.get()) {
                    int p = rnd.nextInt(pages);
                    long hva = r.address() + p * PAGE;
                    try (Invalidation inv = throughNotifier ? f.notifier.invalidate(hva, hva + PAGE) : null) {
                        if (rnd.nextInt(4) == 0) {
                            Mman.mmap(hva, PAGE, Mman.PROT_READ | Mman.PROT_WRITE,
                                    Mman.MAP_FIXED | Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
                        } else {
                            Mman.madvise(hva, PAGE, Mman.MADV_DONTNEED);
                        }
                        seg.set(ValueLayout.JAVA_BYTE, p * PAGE, (byte) 2); // a new page, before the end
                    }
                    remaps.incrementAndGet();
                    Thread.onSpinWait();
                }
            } catch (Throwable e) {
                synchronized (failures) {
                    failures.add(e);
                }
            }
        }));
        // At least 3 s, then until the race has run (and, for the control, caught a stale result): the window
        // scales with the machine instead of being a fixed sleep (under emulation a race needs longer). 90 s cap.
        long start = System.nanoTime(), minEnd = start + 3_000_000_000L, cap = start + 90_000_000_000L;
        while (System.nanoTime() < cap) {
            boolean ran = checked.get() > 100 && remaps.get() > 100 && (throughNotifier || stale.get() > 0);
            if (ran && System.nanoTime() >= minEnd) break;
            Thread.sleep(20);
        }
        stop.set(true);
        for (Thread t : threads) {
            t.join(java.time.Duration.ofSeconds(30));
            assertTrue(!t.isAlive(), t.getName() + " did not stop within 30 s");
        }
        System.out.printf((throughNotifier ? "" : "bypassing the notifier: ") + "race: %d results checked against pagemap, %d retried, %d remaps, %d errors, %d STALE%n",
                checked.get(), retried.get(), remaps.get(), errors.get(), stale.get());
        assertTrue(failures.isEmpty(), failures::toString);
        assertTrue(checked.get() > 100 && remaps.get() > 100, "the race did not run");
        assertEquals(0, errors.get());
        assertEquals(0, f.fp.references().size());
        return new long[] {checked.get(), retried.get(), stale.get()};
    }
}
