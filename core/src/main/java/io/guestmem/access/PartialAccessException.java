package io.guestmem.access;

/**
 * An access ran into guest physical memory that is not RAM the host can reach: a gap between memslots
 * ({@link Reason#NOT_RAM}) or a slot without a registered host region ({@link Reason#NO_HOST_MEMORY}).
 */
public final class PartialAccessException extends GuestMemoryException {
    PartialAccessException(Reason reason, String op, long firstBadGpa, long bytesDone, int slotId, String why) {
        super(reason, op, firstBadGpa, bytesDone, slotId, why);
    }
}
