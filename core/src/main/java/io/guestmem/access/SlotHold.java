package io.guestmem.access;

import java.util.concurrent.atomic.AtomicInteger;

/**
 * The hold counter of one slot's view: how many channel transfers have the view's memory in an I/O call now
 * ({@link #holders}), and how many changes that would close the view are waiting for them to end
 * ({@link #blockers}). It lives in the slot's {@link SlotMapping} and follows the view: kept across FLAGS_ONLY
 * remaps (as the dirty bitmap is), new with every new view. The protocol is {@link LayoutGate}'s.
 *
 * <p>Why a transfer must hold the view and a plain access need not: a channel call keeps the view's memory
 * session acquired for the whole system call, so the view cannot be closed (the JDK refuses with
 * IllegalStateException) until the call returns, which for a blocking socket or pipe may be never. A plain
 * access is over in nanoseconds and the view's close handshake simply waits for it.
 */
final class SlotHold {
    /** Transfers inside the view now. Incremented before {@link #blockers} is read (see LayoutGate). */
    final AtomicInteger holders = new AtomicInteger();
    /** Pending changes that will close the view: new holds wait while this is not 0. Written under the gate's lock. */
    volatile int blockers;

    @Override
    public String toString() {
        return "hold[" + holders.get() + " holders, " + blockers + " blockers]";
    }
}
