package io.guestmem.access;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The readers/writer protocol between a {@link GuestMemory}'s long-lived users of its layout and the changes
 * of that layout: KVM's memslot SRCU ({@code srcu_read_lock} by vCPUs, {@code synchronize_srcu} in
 * {@code kvm_swap_active_memslots}), except that the writer's wait is bounded.
 *
 * <h2>Readers</h2>
 * <ul>
 *   <li>Channel transfers hold the {@link SlotHold}s of the slots they touch for the whole I/O call
 *       ({@link #holdRange}, {@link #releaseRange}): the view of a held slot is never closed under them.</li>
 *   <li>{@link GuestMemory.Pin}s count themselves in {@link #pin}: while any is open the layout (which gpa is
 *       which slot's memory) does not change.</li>
 * </ul>
 * A reader counts itself in first and only then looks for a pending change (Dekker-style against the writer,
 * which marks first and then counts): either the reader sees the mark, backs out and waits for the change's
 * outcome ({@link #awaitOutcome}, {@link #pin}), or the writer sees the reader and waits for it. The fast
 * path of a reader is one atomic increment and one or two volatile reads; it allocates nothing.
 *
 * <h2>Writers</h2>
 * {@link #begin} marks the holds of the slots a change would take views from (and, for a change of the
 * layout, the pins), then waits until those counts are zero, at most the {@linkplain #timeout() timeout}.
 * If they drain the writer goes on with its change and calls {@link #end} once the new table is published
 * (or the change was rolled back); new readers wait meanwhile. If they do not, {@code begin} unmarks and throws
 * {@link SlotBusyException}: nothing was changed and the waiting readers go on with the layout they had.
 * Writers do not hold the guest memory's lock while they wait, only the memslot writer's (a memslot change)
 * or the region's close lock (a region close).
 */
final class LayoutGate {
    static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(1);

    /** What waits, and is woken, in both directions. Writers change the marks only under it. */
    private final Object lock = new Object();
    private final AtomicInteger pins = new AtomicInteger();
    /** Pending changes of the layout: new pins wait while this is not 0. */
    private volatile int layoutChanges;
    /** Pending closes of the whole guest memory: every new hold waits while this is not 0. */
    private volatile int closing;
    private volatile long timeoutNanos = DEFAULT_TIMEOUT.toNanos();

    /** One writer's marks, from {@link #begin} to {@link #end}. */
    static final class Barrier {
        private final String operation;
        private final List<SlotMapping> slots;
        private final boolean layout;
        private final boolean everything;
        private boolean ended; // guarded by the gate's lock

        private Barrier(String operation, List<SlotMapping> slots, boolean layout, boolean everything) {
            this.operation = operation;
            this.slots = slots;
            this.layout = layout;
            this.everything = everything;
        }

        @Override
        public String toString() {
            return "barrier of " + operation;
        }
    }

    Duration timeout() {
        return Duration.ofNanos(timeoutNanos);
    }

    void setTimeout(Duration d) {
        if (d.isNegative()) throw new IllegalArgumentException("drain timeout " + d);
        timeoutNanos = d.toNanos();
    }

    // ------------------------------------------------------------------------------------------ readers

    /**
     * Holds the slots of {@code t} covering gfns {@code firstGfn..lastGfn} (a range the checked path found to
     * be RAM throughout, so consecutive slots cover it), walking them in gpa order; returns -1 when all are
     * held, or the index of the first slot with a change pending, having released the others.
     */
    int holdRange(SlotTable t, long firstGfn, long lastGfn) {
        for (long g = firstGfn; ; ) {
            int i = t.set.indexOf(g);
            if (!hold(t.mapping(i).hold())) {
                if (g > firstGfn) releaseRange(t, firstGfn, g - 1);
                return i;
            }
            long end = t.set.endGfnAt(i);
            if (end > lastGfn) return -1;
            g = end;
        }
    }

    /** Holds slot {@code i} of {@code t}: -1, or {@code i} when a change is pending on it (nothing held). */
    int holdSlot(SlotTable t, int i) {
        return hold(t.mapping(i).hold()) ? -1 : i;
    }

    /** Lets go of what {@link #holdSlot} held. */
    void releaseSlot(SlotTable t, int i) {
        release(t.mapping(i).hold());
    }

    /** Holds {@code h} alone: true, or false (nothing held) while a change is pending on it or the memory closes. */
    boolean hold(SlotHold h) {
        h.holders.incrementAndGet();
        if (h.blockers != 0 || closing != 0) {
            release(h);
            return false;
        }
        return true;
    }

    /** Lets go of a hold {@link #hold(SlotHold)} took. */
    void unhold(SlotHold h) {
        release(h);
    }

    /** Lets go of what {@link #holdRange} held for the same gfns. */
    void releaseRange(SlotTable t, long firstGfn, long lastGfn) {
        for (long g = firstGfn; g <= lastGfn; ) {
            int i = t.set.indexOf(g);
            release(t.mapping(i).hold());
            g = t.set.endGfnAt(i);
        }
    }

    private void release(SlotHold h) {
        if (h.holders.decrementAndGet() == 0 && (h.blockers != 0 || closing != 0)) wake();
    }

    /**
     * Waits until no change is pending on {@code h} (the pending change itself is bounded by the timeout, so
     * this is too). Not interruptible: the interrupt status is kept for the I/O call that follows.
     */
    void awaitOutcome(SlotHold h) {
        boolean interrupted = false;
        synchronized (lock) {
            while (h.blockers != 0 || closing != 0) {
                try {
                    lock.wait();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    /** Counts a pin in, waiting first for the outcome of a pending layout change. */
    void pin() {
        while (true) {
            pins.incrementAndGet();
            if (layoutChanges == 0) return;
            unpin();
            boolean interrupted = false;
            synchronized (lock) {
                while (layoutChanges != 0) {
                    try {
                        lock.wait();
                    } catch (InterruptedException e) {
                        interrupted = true;
                    }
                }
            }
            if (interrupted) Thread.currentThread().interrupt();
        }
    }

    void unpin() {
        if (pins.decrementAndGet() == 0 && layoutChanges != 0) wake();
    }

    /** Pins open now. */
    int pins() {
        return pins.get();
    }

    private void wake() {
        synchronized (lock) {
            lock.notifyAll();
        }
    }

    // ------------------------------------------------------------------------------------------ writers

    /**
     * Marks the holds of {@code slots}, the pins too when {@code layout}, every hold when {@code everything},
     * and waits for them to drain. Returns the marks, to be {@linkplain #end ended} by the caller once its
     * change is published or abandoned; or unmarks and throws {@link SlotBusyException} naming what held on
     * after the timeout (or when interrupted, with the interrupt status kept).
     */
    Barrier begin(String operation, Collection<SlotMapping> slots, boolean layout, boolean everything) {
        Barrier b = new Barrier(operation, List.copyOf(slots), layout, everything);
        synchronized (lock) {
            for (SlotMapping m : b.slots) m.hold().blockers++;
            if (layout) layoutChanges++;
            if (everything) closing++;
            long timeout = timeoutNanos, start = System.nanoTime();
            while (true) {
                int held = 0;
                for (SlotMapping m : b.slots) held += m.hold().holders.get();
                int p = layout ? pins.get() : 0;
                if (held == 0 && p == 0) return b;
                long left = timeout - (System.nanoTime() - start);
                boolean interrupted = false;
                if (left > 0) {
                    try {
                        TimeUnit.NANOSECONDS.timedWait(lock, left);
                        continue;
                    } catch (InterruptedException e) {
                        interrupted = true;
                    }
                }
                SlotBusyException busy = busy(b, timeout, interrupted);
                endLocked(b);
                if (interrupted) Thread.currentThread().interrupt();
                throw busy;
            }
        }
    }

    /** Removes the marks of {@code b} and wakes the readers waiting for its outcome. Idempotent. */
    void end(Barrier b) {
        if (b == null) return;
        synchronized (lock) {
            endLocked(b);
        }
    }

    private void endLocked(Barrier b) {
        if (b.ended) return;
        b.ended = true;
        for (SlotMapping m : b.slots) m.hold().blockers--;
        if (b.layout) layoutChanges--;
        if (b.everything) closing--;
        lock.notifyAll();
    }

    private SlotBusyException busy(Barrier b, long timeoutNanos, boolean interrupted) {
        List<Integer> ids = new ArrayList<>();
        int transfers = 0;
        for (SlotMapping m : b.slots) {
            int n = m.hold().holders.get();
            if (n > 0) {
                ids.add(m.slot().id());
                transfers += n;
            }
        }
        int p = b.layout ? pins.get() : 0;
        StringBuilder why = new StringBuilder();
        if (!ids.isEmpty()) {
            why.append(ids.size() == 1 ? "slot " + ids.getFirst() + " is" : "slots " + ids + " are")
                    .append(" held by ").append(transfers).append(transfers == 1 ? " channel transfer" : " channel transfers")
                    .append(" in an I/O call");
        }
        if (p > 0) why.append(ids.isEmpty() ? "" : " and ").append(p).append(p == 1 ? " pin is" : " pins are").append(" open");
        why.append(interrupted ? ", and the thread was interrupted while waiting"
                : " after waiting " + TimeUnit.NANOSECONDS.toMillis(timeoutNanos) + " ms (the drain timeout)");
        why.append("; nothing was changed. A pin or transfer of the thread making this change cannot end while that"
                + " thread waits here: close the pin, or let the transfer return, before changing the layout");
        return new SlotBusyException(b.operation, ids, transfers, p, why.toString());
    }
}
