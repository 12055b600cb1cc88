package io.guestmem.vhost;

import io.guestmem.sys.Eventfd;
import io.guestmem.vhost.queue.SplitQueue;

/**
 * One ring's vhost state as the front-end set it: size, addresses (in the front-end's virtual address
 * space), base, its kick/call/err eventfds, enabled and started. The {@link SplitQueue} exists while the
 * ring runs: built at its start (SET_VRING_KICK), rebuilt when its addresses change (migration's
 * SET_VRING_ADDR with the log flag comes while it runs), gone at its stop (GET_VRING_BASE).
 */
final class Vring implements AutoCloseable {
    /** SET_VRING_KICK/CALL/ERR: bits 0-7 are the index, bit 8 says no fd came. */
    static final long INDEX_MASK = 0xff, NOFD = 0x100;
    /** SET_VRING_ADDR flags: VHOST_VRING_F_LOG. */
    static final int F_LOG = 1;

    /** SET_VRING_ADDR's payload: {@code u32 index, u32 flags, u64 desc, u64 used, u64 avail, u64 log}. */
    record Addresses(int flags, long desc, long used, long avail, long log) {
        boolean logged() {
            return (flags & F_LOG) != 0;
        }
    }

    final int index;
    int num;
    Addresses addresses;
    int base;
    Eventfd kick, call, err;
    boolean enabled;
    SplitQueue queue; // non-null while started

    Vring(int index) {
        this.index = index;
    }

    boolean running() {
        return queue != null && enabled && kick != null;
    }

    /** Stops the ring, keeping where it was (the base GET_VRING_BASE returns). */
    void stop() {
        if (queue != null) base = queue.lastAvailIdx();
        queue = null;
    }

    static Eventfd replace(Eventfd old, Eventfd now) {
        if (old != null) old.close();
        return now;
    }

    @Override
    public void close() {
        stop();
        kick = replace(kick, null);
        call = replace(call, null);
        err = replace(err, null);
    }
}
