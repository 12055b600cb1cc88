package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.host.HostRegion;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.FollowPfn;
import io.guestmem.mmu.FollowPfnRequest;
import io.guestmem.mmu.FollowPfnResult;
import io.guestmem.mmu.Invalidation;
import io.guestmem.mmu.PfnCache;
import io.guestmem.mmu.UffdInvalidationSource;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.mmu.FollowPfnCollaborators;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.LongAdder;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Readers translate gfn → hva and read the page's pagemap entry under the MMU notifier's sequence while other
 * threads delete, move and recreate the slots, punch holes in the memfd behind half of them, MADV_DONTNEED the
 * anonymous memory behind the other half, and fault pages back in. Invariant: a result that passed its
 * {@code retryGfn} check agrees with the slot set and with pagemap read right after it under the same sequence
 * (a second {@code retryGfn} says whether "right after" still is the same sequence; if not, the comparison is
 * not made). Only documented exceptions are allowed (EEXIST for a create or move onto another slot).
 *
 * <p>The hole punches and most DONTNEEDs are wrapped in {@link MmuNotifier#invalidate}, as code the library owns
 * must do; one more thread DONTNEEDs a third region straight through the kernel, and the
 * {@link UffdInvalidationSource} watching it turns each REMOVE event into an invalidation (checked: at least one
 * event per DONTNEED). The kernel reports REMOVE before it zaps, so over that region a result may disagree without
 * any stale-result bug of the library (the source's documented window): such disagreements are counted apart.
 * One reader runs follow_pfn (FOLL_NOWAIT reads) and one uses a {@link PfnCache} (hits verified against pagemap
 * while the cache stays valid).
 *
 * <p>Duration: {@code -Dguestmem.soak.seconds} (default 60), longer (up to four times) until the evidence is in.
 */
@ExtendWith(LeakGuard.class)
class ConcurrencySoakTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static final int CHUNK = 256;              // pages per slot
    static final int CHUNKS = 16;              // per region: slots 0..15 over the memfd, 16..31 over anon memory
    static final int POSITIONS = 4 * CHUNKS;   // where a slot can sit in gfn space (in chunks)
    static final int SNEAKY_CHUNKS = 8;        // slots 32..39 over anonymous memory DONTNEEDed behind the library's back
    static final int SLOTS = 2 * CHUNKS + SNEAKY_CHUNKS;

    final LongAdder lookups = new LongAdder(), passed = new LongAdder(), retries = new LongAdder(), noSlot = new LongAdder();
    final LongAdder verified = new LongAdder(), sequenceMovedBeforeVerify = new LongAdder(), stale = new LongAdder();
    final LongAdder slotOps = new LongAdder(), refusals = new LongAdder(), punches = new LongAdder();
    final LongAdder dontneeds = new LongAdder(), touches = new LongAdder(), invalidations = new LongAdder();
    final ConcurrentLinkedQueue<String> staleSamples = new ConcurrentLinkedQueue<>();
    final ConcurrentLinkedQueue<Throwable> unexpected = new ConcurrentLinkedQueue<>();

    final LongAdder follows = new LongAdder(), followPassed = new LongAdder(), followVerified = new LongAdder();
    final LongAdder cacheHits = new LongAdder(), cacheVerified = new LongAdder(), cacheRefreshes = new LongAdder();
    final LongAdder behindBack = new LongAdder(), staleInUffdWindow = new LongAdder();
    final java.util.concurrent.atomic.LongAccumulator maxRetries = new java.util.concurrent.atomic.LongAccumulator(Math::max, 0);
    final ConcurrentLinkedQueue<String> uffdSamples = new ConcurrentLinkedQueue<>();

    Memslots memslots;
    MmuNotifier notifier;
    FollowPfn followPfn;
    Pagemap pagemap;
    HostRegion memfd, anon, sneaky;

    long chunkHva(int slot) {
        if (slot >= 2 * CHUNKS) return sneaky.address() + (long) (slot - 2 * CHUNKS) * CHUNK * PAGE;
        return slot < CHUNKS ? memfd.address() + (long) slot * CHUNK * PAGE : anon.address() + (long) (slot - CHUNKS) * CHUNK * PAGE;
    }

    /** One reader step. Returns true if the check's result was verified (for the negative control). */
    void check(long gfn) {
        lookups.increment();
        // Retrying is the protocol; only a lookup that cannot finish for 10 s (a livelock) fails the soak. On two
        // shared cores a reader descheduled between sequence() and retryGfn() may need many attempts.
        long deadline = 0;
        for (int attempt = 0; ; attempt++) {
            if ((attempt & 1023) == 1023) {
                if (deadline == 0) deadline = System.nanoTime() + 10_000_000_000L;
                else if (System.nanoTime() > deadline) throw new AssertionError("gfn " + gfn + " retried for 10 s (" + attempt + " attempts)");
                maxRetries.accumulate(attempt);
            }
            long seq = notifier.sequence();
            MemslotSet set = memslots.current();
            long hva = set.gfnToHva(gfn);
            if (hva < 0) {
                noSlot.increment();
                return;
            }
            long raw = pagemap.readRaw(hva);
            if (notifier.retryGfn(gfn, seq)) {
                retries.increment();
                continue;
            }
            passed.increment();
            // Right after, under the same sequence: the slot set and the kernel must still say the same.
            long hvaNow = memslots.current().gfnToHva(gfn);
            long raw2 = pagemap.readRaw(hva);
            if (notifier.retryGfn(gfn, seq)) {
                sequenceMovedBeforeVerify.increment();
                return;
            }
            verified.increment();
            String why = disagreement(hva, hvaNow, raw, raw2);
            if (why != null) disagreed(hva, "gfn " + Long.toHexString(gfn) + ": " + why);
            return;
        }
    }

    /**
     * One follow_pfn step (FOLL_NOWAIT read, so it never faults): a pfn that passed {@code retryGfn} with the
     * result's own sequence must be the pfn pagemap shows right after; the reference is released either way.
     */
    void follow(long gfn) {
        follows.increment();
        FollowPfnResult r = followPfn.follow(FollowPfnRequest.read(gfn).withNoWait(true));
        try {
            if (!r.ok() || r.pfn() < 0) return; // NOSLOT, NEEDS_IO (not present): nothing to verify
            if (notifier.retryGfn(gfn, r.sequence())) {
                retries.increment();
                return;
            }
            followPassed.increment();
            long raw2 = pagemap.readRaw(r.hva());
            long hvaNow = memslots.current().gfnToHva(gfn);
            if (notifier.retryGfn(gfn, r.sequence())) {
                sequenceMovedBeforeVerify.increment();
                return;
            }
            followVerified.increment();
            String why = hvaNow != r.hva() ? "slot set now maps it at " + Long.toHexString(hvaNow)
                    : !PagemapEntry.isPresent(raw2) ? "follow_pfn said pfn " + Long.toHexString(r.pfn()) + ", page now not present"
                    : pagemap.pfnOf(raw2) != r.pfn() ? "follow_pfn said pfn " + Long.toHexString(r.pfn()) + ", pagemap "
                    + Long.toHexString(pagemap.pfnOf(raw2)) : null;
            if (why != null) disagreed(r.hva(), "follow_pfn gfn " + Long.toHexString(gfn) + ": " + why);
        } finally {
            if (r.reference() != null) followPfn.releaseFaultinPage(r, false, false);
        }
    }

    /**
     * Counts a disagreement: over the memory DONTNEEDed behind the library's back it is the userfaultfd source's
     * documented window (the kernel reports REMOVE before it zaps, so the invalidation may end before the pages
     * go), counted apart; anywhere else it is a stale result.
     */
    void disagreed(long hva, String why) {
        if (sneaky.contains(hva, 1)) {
            staleInUffdWindow.increment();
            if (uffdSamples.size() < 5) uffdSamples.add(why);
        } else {
            stale.increment();
            if (staleSamples.size() < 10) staleSamples.add(why);
        }
    }

    /**
     * pfn-cache hits: a hit's pfn, read while the cache stays valid across a pagemap read of its hva, must be the
     * pfn pagemap shows; a miss refreshes.
     */
    void pfnCacheUser(PfnCache cache, ThreadLocalRandom rnd) {
        MemslotSet set = memslots.current();
        if (set.size() == 0) return;
        var slot = set.slots().get(rnd.nextInt(set.size())); // the k-th in gfn order, O(log n)
        long gpa = (slot.baseGfn() + rnd.nextLong(slot.npages())) * PAGE + 64;
        if (cache.activate(gpa, 8) != null) return;
        for (int k = 0; k < 200; k++) {
            if (!cache.check()) {
                cacheRefreshes.increment();
                if (cache.refresh() != null) return;
                continue;
            }
            cacheHits.increment();
            long pfn = cache.pfn(), hva = cache.hva() & -PAGE;
            long raw = pagemap.readRaw(hva);
            if (!cache.check()) continue; // invalidated meanwhile: the comparison would mean nothing
            cacheVerified.increment();
            if (!PagemapEntry.isPresent(raw) || pagemap.pfnOf(raw) != pfn)
                disagreed(hva, "pfn cache hit says pfn " + Long.toHexString(pfn) + ", pagemap " + Long.toHexString(raw));
        }
    }

    /** Null when the verified result agrees with what was read right after it. */
    String disagreement(long hva, long hvaNow, long raw, long raw2) {
        if (hvaNow != hva) return "slot set now maps it at " + Long.toHexString(hvaNow) + ", result said " + Long.toHexString(hva);
        if (!PagemapEntry.isPresent(raw)) return null; // not present then; a fault-in since is not an invalidation
        if (!PagemapEntry.isPresent(raw2)) return "page was present (pfn " + Long.toHexString(pagemap.pfnOf(raw)) + "), now not";
        if (pagemap.pfnOf(raw) != pagemap.pfnOf(raw2))
            return "pfn " + Long.toHexString(pagemap.pfnOf(raw)) + " became " + Long.toHexString(pagemap.pfnOf(raw2));
        return null;
    }

    void slotMutator(ThreadLocalRandom rnd) {
        int id = rnd.nextInt(SLOTS);
        long gpa = (long) rnd.nextInt(POSITIONS) * CHUNK * PAGE;
        boolean exists = memslots.current().byId(id) != null;
        try {
            if (exists && rnd.nextInt(3) == 0) memslots.deleteMemslot(0, id);
            else memslots.setMemslot(0, id, 0, gpa, CHUNK * PAGE, chunkHva(id)); // move, or recreate
            slotOps.increment();
        } catch (KvmException e) {
            if (e.errno() != Errno.EEXIST) throw e; // documented: the new place overlaps another slot
            refusals.increment();
        }
    }

    void puncher(ThreadLocalRandom rnd) {
        int pages = 1 + rnd.nextInt(16);
        long off = (long) rnd.nextInt(CHUNKS * CHUNK - pages) * PAGE;
        try (Invalidation inv = notifier.invalidate(memfd.address() + off, memfd.address() + off + pages * PAGE)) {
            Memfd.punchHole(memfd.fd().getAsInt(), off, pages * PAGE);
        }
        invalidations.increment();
        punches.increment();
    }

    void dontneed(ThreadLocalRandom rnd) {
        int pages = 1 + rnd.nextInt(16);
        long off = (long) rnd.nextInt(CHUNKS * CHUNK - pages) * PAGE;
        try (Invalidation inv = notifier.invalidate(anon.address() + off, anon.address() + off + pages * PAGE)) {
            Mman.madvise(anon.address() + off, pages * PAGE, Mman.MADV_DONTNEED);
        }
        invalidations.increment();
        dontneeds.increment();
    }

    /** MADV_DONTNEED straight to the kernel: only the userfaultfd source can tell the notifier. */
    void behindTheBack(ThreadLocalRandom rnd) {
        int pages = 1 + rnd.nextInt(16);
        long off = (long) rnd.nextInt(SNEAKY_CHUNKS * CHUNK - pages) * PAGE;
        Mman.madvise(sneaky.address() + off, pages * PAGE, Mman.MADV_DONTNEED);
        behindBack.increment();
    }

    void toucher(ThreadLocalRandom rnd) {
        int which = rnd.nextInt(3);
        HostRegion r = which == 0 ? memfd : which == 1 ? anon : sneaky;
        long off = (long) rnd.nextInt((int) (r.size() / PAGE)) * PAGE;
        r.segment().set(ValueLayout.JAVA_LONG, off, rnd.nextLong());
        touches.increment();
        if ((rnd.nextInt() & 15) == 0) Thread.yield();
    }

    interface Step {
        void run(ThreadLocalRandom rnd);
    }

    static Step paced(Step s) {
        return rnd -> {
            s.run(rnd);
            java.util.concurrent.locks.LockSupport.parkNanos(rnd.nextLong(500_000));
        };
    }

    long uffdEvents;
    int heldAcrossSlotChanges;
    long ranSeconds;

    boolean enoughEvidence() {
        return verified.sum() > 1000 && followVerified.sum() > 100 && cacheVerified.sum() > 100 && retries.sum() > 0 && invalidations.sum() > 0;
    }

    @Test
    void readersNeverKeepAStaleResult() throws Exception {
        long seconds = Long.getLong("guestmem.soak.seconds", 60);
        long migratedBefore = vmstat("pgmigrate_success");
        memslots = new Memslots();
        notifier = new MmuNotifier(memslots);
        try (HostRegion m = HostRegion.memfd(CHUNKS * CHUNK * PAGE).name("soak").prefault(io.guestmem.host.Prefault.Mode.WRITE).create();
             HostRegion a = HostRegion.anonymous(CHUNKS * CHUNK * PAGE).prefault(io.guestmem.host.Prefault.Mode.WRITE).create();
             HostRegion c = HostRegion.anonymous(SNEAKY_CHUNKS * CHUNK * PAGE).prefault(io.guestmem.host.Prefault.Mode.WRITE).create();
             Pagemap pm = Pagemap.openSelf(); FollowPfn fp = new FollowPfn(notifier, FollowPfnCollaborators.standalone()); PfnCache cache = new PfnCache(fp, 0);
             UffdInvalidationSource uffd = UffdInvalidationSource.start(notifier)) {
            followPfn = fp;
            sneaky = c;
            uffd.watch(c.address(), c.size());
            memfd = m;
            anon = a;
            pagemap = pm;
            for (int id = 0; id < SLOTS; id++) memslots.setMemslot(0, id, 0, 2L * id * CHUNK * PAGE, CHUNK * PAGE, chunkHva(id));

            negativeControl();

            AtomicBoolean stop = new AtomicBoolean();
            List<Thread> threads = new ArrayList<>();
            long gfns = (long) POSITIONS * CHUNK;
            // Three lookups in four hit a slot that exists now (it may be gone by the time it is read).
            Step reader = rnd -> {
                MemslotSet set = memslots.current();
                if (set.size() > 0 && (rnd.nextInt() & 3) != 0) {
                    var slot = set.slots().get(rnd.nextInt(set.size())); // the k-th in gfn order, O(log n)
                    check(slot.baseGfn() + rnd.nextLong(slot.npages()));
                } else {
                    check(rnd.nextLong(gfns));
                }
            };
            // Writers are paced (a random pause of up to 0.5 ms between changes): every invalidation moves the
            // sequence for all gfns, so writers changing memory back to back would starve the readers, as they
            // would starve KVM's faults.
            Step mutator = paced(this::slotMutator), punch = paced(this::puncher), dn = paced(this::dontneed);
            Step follower = rnd -> {
                MemslotSet set = memslots.current();
                if (set.size() > 0) {
                    var slot = set.slots().get(rnd.nextInt(set.size())); // the k-th in gfn order, O(log n)
                    follow(slot.baseGfn() + rnd.nextLong(slot.npages()));
                }
            };
            Step cacheUser = rnd -> pfnCacheUser(cache, rnd);
            for (Step s : List.<Step>of(reader, reader, follower, cacheUser, mutator, punch, dn, paced(this::behindTheBack), this::toucher)) {
                Thread t = new Thread(() -> {
                    ThreadLocalRandom rnd = ThreadLocalRandom.current();
                    try {
                        while (!stop.get()) s.run(rnd);
                    } catch (Throwable e) {
                        unexpected.add(e);
                        stop.set(true);
                    }
                }, "soak");
                threads.add(t);
            }
            threads.forEach(Thread::start);
            // The soak runs its time, then on until it has the evidence the asserts below ask for, at most four
            // times as long: under TCG a follow_pfn costs ~70 ms, and a fixed time can end with too few verified.
            long start = System.nanoTime(), end = start + seconds * 1_000_000_000L, cap = start + 4 * seconds * 1_000_000_000L;
            while (!stop.get() && (System.nanoTime() < end || !enoughEvidence()) && System.nanoTime() < cap) Thread.sleep(100);
            stop.set(true);
            ranSeconds = (System.nanoTime() - start) / 1_000_000_000L;
            for (Thread t : threads) t.join();
            cache.deactivate();
            assertEquals(null, uffd.lastFailure(), "userfaultfd source failed");
            uffdEvents = uffd.eventsHandled();
            uffd.unwatch(c.address(), c.size());
            assertTrue(uffdEvents >= behindBack.sum(), uffdEvents + " userfaultfd events for " + behindBack.sum() + " DONTNEEDs behind the back");
            // Readers hold a follow_pfn reference between follow and release (the cache, while valid), so a slot
            // change can find one held: FollowPfn reports those; what matters is that none is left at the end.
            heldAcrossSlotChanges = fp.leakReports().size();
            assertEquals(0, fp.references().countRange(0, 0, Long.MAX_VALUE), "follow_pfn references left: " + fp.leakReports());
        }
        long migrated = vmstat("pgmigrate_success") - migratedBefore;
        long ops = lookups.sum() + slotOps.sum() + refusals.sum() + punches.sum() + dontneeds.sum() + touches.sum();
        ops += follows.sum() + cacheHits.sum() + cacheRefreshes.sum() + behindBack.sum();
        String summary = String.format("soak %d s: %d operations (%d follow_pfn: %d passed the retry check, %d verified; "
                        + "%d gfn lookups: %d passed the retry check, %d retries (both kinds), %d no slot; "
                        + "%d verified against pagemap, %d not verifiable because the sequence moved first), %d slot changes "
                        + "(+%d EEXIST refusals), %d hole punches, %d DONTNEEDs, %d faults-in, %d hva invalidations "
                        + "(notifier sequence %d), stale results %d; kernel page migrations meanwhile %d; pfn cache: %d hits (%d verified), "
                        + "%d refreshes; %d DONTNEEDs behind the library's back, %d userfaultfd events, %d disagreements in "
                        + "the userfaultfd source's documented window",
                ranSeconds, ops, follows.sum(), followPassed.sum(), followVerified.sum(), lookups.sum(), passed.sum(), retries.sum(), noSlot.sum(), verified.sum(),
                sequenceMovedBeforeVerify.sum(), slotOps.sum(), refusals.sum(), punches.sum(), dontneeds.sum(),
                touches.sum(), invalidations.sum(), notifier.sequence(), stale.sum(), migrated, cacheHits.sum(), cacheVerified.sum(),
                cacheRefreshes.sum(), behindBack.sum(), uffdEvents, staleInUffdWindow.sum());
        System.out.println(summary);
        String area = "concurrency soak (" + ranSeconds + " s: gfn→hva, follow_pfn and pfn-cache readers vs slot delete/move/create, hole punches, DONTNEED notified and behind the back, faults)";
        ReliabilityReport.put(area, "operations", ops);
        ReliabilityReport.put(area, "invalidations (hva ranges; notifier sequence incl. slot changes)", invalidations.sum() + " (" + notifier.sequence() + ")");
        ReliabilityReport.put(area, "lookups passing the retry check / retries (most for one lookup)", passed.sum() + " / " + retries.sum()
                + " (" + (maxRetries.get() == 0 ? "< 1024" : "≈" + maxRetries.get()) + ")");
        ReliabilityReport.put(area, "passed results verified against pagemap right after (gfn→hva+pagemap / follow_pfn)", verified.sum() + " / " + followVerified.sum());
        ReliabilityReport.put(area, "pfn-cache hits (verified against pagemap) / refreshes", cacheHits.sum() + " (" + cacheVerified.sum() + ") / " + cacheRefreshes.sum());
        ReliabilityReport.put(area, "DONTNEEDs behind the library's back / userfaultfd events turned into invalidations", behindBack.sum() + " / " + uffdEvents);
        ReliabilityReport.put(area, "slot changes that found a follow_pfn reference held (reported by FollowPfn) / references left at the end",
                heldAcrossSlotChanges + " / 0");
        ReliabilityReport.put(area, "stale results caught", stale.sum());
        ReliabilityReport.put(area, "disagreements over memory changed behind the back (userfaultfd REMOVE comes before the zap: documented window)", staleInUffdWindow.sum());
        assertTrue(unexpected.isEmpty(), "undocumented exceptions: " + unexpected);
        assertTrue(verified.sum() > 1000 && followVerified.sum() > 100 && cacheVerified.sum() > 100, summary);
        if (staleInUffdWindow.sum() > 0) System.out.println("in the userfaultfd window: " + uffdSamples);
        assertTrue(retries.sum() > 0 && invalidations.sum() > 0, "the soak raced nothing: " + summary);
        assertEquals(0, stale.sum(), "stale results (kernel page migrations meanwhile: " + migrated + "): " + staleSamples);
    }

    /**
     * The checker can fail: a DONTNEED made without the notifier after a result passed its check is reported
     * stale (then the library is made whole again by invalidating).
     */
    void negativeControl() {
        long gfn = 0;
        long seq = notifier.sequence();
        long hva = memslots.current().gfnToHva(gfn);
        long raw = pagemap.readRaw(hva);
        assertTrue(PagemapEntry.isPresent(raw), "prefaulted page not present");
        assertTrue(!notifier.retryGfn(gfn, seq));
        Memfd.punchHole(memfd.fd().getAsInt(), 0, PAGE); // behind the library's back
        long raw2 = pagemap.readRaw(hva);
        assertTrue(!notifier.retryGfn(gfn, seq), "nothing told the notifier");
        String why = disagreement(hva, memslots.current().gfnToHva(gfn), raw, raw2);
        assertTrue(why != null, "the checker missed an unnotified hole punch");
        System.out.println("negative control (hole punch without the notifier) caught: " + why);
        try (Invalidation inv = notifier.invalidate(hva, hva + PAGE)) {
            invalidations.increment();
        }
    }

    static long vmstat(String key) throws IOException {
        for (String l : Files.readAllLines(Path.of("/proc/vmstat"))) if (l.startsWith(key + " ")) return Long.parseLong(l.substring(key.length() + 1));
        return 0;
    }
}
