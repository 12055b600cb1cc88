package io.guestmem.access;

/** A write reached a READONLY memslot (ROM, flash) or memory the host mapped read-only; names the slot. */
public final class ReadOnlySlotException extends GuestMemoryException {
    ReadOnlySlotException(String op, long firstBadGpa, long bytesDone, int slotId, String why) {
        super(Reason.READ_ONLY, op, firstBadGpa, bytesDone, slotId, why);
    }
}
