package io.guestmem.gmem;

import io.guestmem.mmu.Mappability;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Threads take and release shared references on a page-state machine (as follow_pfn callers and accessors do)
 * while the calling thread converts every page private and back. A reference holder must never see its page
 * private, nor waiting to turn shared; the caller checks what is left afterwards (no reference lost, the last
 * conversion's state). Run on the pure {@link PageStates} and through a real {@link GuestMemfdRegion}.
 */
final class ConversionRace {
    private ConversionRace() {}

    /** One private-and-back round; returns the pages the private conversion deferred to a final put. */
    interface Round {
        long convertPrivateThenShared();
    }

    record Result(long referencesTaken, long pagesDeferred) {}

    static Result run(PageStates s, int pages, int workers, int rounds, Round round) throws InterruptedException {
        AtomicReference<Throwable> failure = new AtomicReference<>();
        long[] taken = new long[workers];
        List<Thread> threads = new ArrayList<>();
        CountDownLatch stop = new CountDownLatch(1);
        for (int w = 0; w < workers; w++) {
            int id = w;
            Thread t = new Thread(() -> {
                Random rnd = new Random(id);
                try {
                    while (stop.getCount() > 0) {
                        int p = rnd.nextInt(pages);
                        if (!s.tryGet(p, false)) continue;
                        taken[id]++;
                        Mappability m = s.mappability(p);
                        if (m == Mappability.GUEST) throw new AssertionError("page " + p + " private under a shared reference");
                        if (m == Mappability.NONE && s.pendingTarget(p) == Mappability.ALL)
                            throw new AssertionError("page " + p + " waits for private references under a shared one");
                        Thread.onSpinWait();
                        s.put(p, false);
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }, "ref-" + w);
            threads.add(t);
            t.start();
        }
        long deferred = 0;
        try {
            for (int r = 0; r < rounds && failure.get() == null; r++) deferred += round.convertPrivateThenShared();
        } finally {
            stop.countDown();
            for (Thread t : threads) t.join(30_000);
        }
        for (Thread t : threads) if (t.isAlive()) throw new AssertionError(t.getName() + " still runs 30 s after the stop");
        if (failure.get() != null) throw new AssertionError(failure.get());
        long total = 0;
        for (long n : taken) total += n;
        System.out.println("racing references: " + total + " references taken, " + deferred + " pages deferred to a final put");
        return new Result(total, deferred);
    }
}
