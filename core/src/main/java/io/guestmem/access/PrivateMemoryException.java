package io.guestmem.access;

/**
 * The {@link PageAccessPolicy} refused a page of a GUEST_MEMFD slot: the page is private to the guest (or
 * in no state the host may touch). Raised before any access to that page, so it replaces what would
 * otherwise be a SIGBUS on a guest_memfd mapping. (A {@code GuestMemfdRegion}'s own accessors, which address
 * the file by offset, refuse the same page with {@code io.guestmem.gmem.HostAccessRefusedException}.)
 */
public final class PrivateMemoryException extends GuestMemoryException {
    private final long gfn;

    PrivateMemoryException(String op, long firstBadGpa, long bytesDone, int slotId, long gfn) {
        super(Reason.PRIVATE, op, firstBadGpa, bytesDone, slotId,
                "gfn 0x" + Long.toHexString(gfn) + " of guest_memfd slot " + slotId + " is not host-accessible");
        this.gfn = gfn;
    }

    /** The refused guest frame. */
    public long gfn() {
        return gfn;
    }
}
