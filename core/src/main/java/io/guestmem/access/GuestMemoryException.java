package io.guestmem.access;

import io.guestmem.sys.Fmt;

/**
 * A guest memory access that could not complete: names the first guest physical address the operation
 * could not touch ({@link #firstBadGpa()}), how many bytes it had transferred before
 * ({@link #bytesDone()}, always the leading bytes of the request), and the slot at fault when there is one.
 * The subclasses say why: no RAM there ({@link PartialAccessException}), a write to a read-only slot
 * ({@link ReadOnlySlotException}), a private page the host may not touch ({@link PrivateMemoryException}), an
 * ordered or atomic access that is not naturally aligned ({@link MisalignedAccessException}).
 */
public sealed class GuestMemoryException extends RuntimeException
        permits PartialAccessException, ReadOnlySlotException, PrivateMemoryException, MisalignedAccessException {

    /** Why the access stopped. */
    public enum Reason {
        /** No memslot holds the gpa (a hole, or past the end of RAM). */
        NOT_RAM,
        /** A memslot holds the gpa, but no host region registered with the GuestMemory backs its hva range. */
        NO_HOST_MEMORY,
        /** A write reached a READONLY slot (or host memory mapped read-only). */
        READ_ONLY,
        /** The page access policy refused the page (private guest_memfd memory). */
        PRIVATE,
        /**
         * An opaque, acquire/release or atomic access at a gpa that is not a multiple of its size: it would
         * not be single-copy atomic on the hardware.
         */
        MISALIGNED
    }

    private final Reason reason;
    private final long firstBadGpa;
    private final long bytesDone;
    private final int slotId;

    GuestMemoryException(Reason reason, String op, long firstBadGpa, long bytesDone, int slotId, String why) {
        super(op + " stopped at gpa " + Fmt.hex(firstBadGpa) + ": " + why + " (" + bytesDone + " bytes done)");
        this.reason = reason;
        this.firstBadGpa = firstBadGpa;
        this.bytesDone = bytesDone;
        this.slotId = slotId;
    }

    public Reason reason() {
        return reason;
    }

    /** The first guest physical address the operation did not access. */
    public long firstBadGpa() {
        return firstBadGpa;
    }

    /** Bytes transferred before {@link #firstBadGpa()} (the request's first bytes). */
    public long bytesDone() {
        return bytesDone;
    }

    /** The id of the slot that refused, or -1 when no slot holds {@link #firstBadGpa()}. */
    public int slotId() {
        return slotId;
    }
}
