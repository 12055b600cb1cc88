package io.guestmem.access;

import io.guestmem.KvmException;
import io.guestmem.sys.Errno;
import java.util.List;

/**
 * A change to guest memory's layout refused with EBUSY because its users did not let go in time: channel
 * transfers still had a slot's memory in an I/O call, or {@link GuestMemory.Pin}s were still open, when the
 * {@linkplain GuestMemory#setDrainTimeout drain timeout} ran out. Thrown from a memslot change (delete, move,
 * create: a veto, so nothing was published), from closing a {@link io.guestmem.host.HostRegion} that backs a
 * slot (the region stays mapped and usable) and from {@link GuestMemory#close()} (the memory stays open).
 * Nothing was changed; the caller may retry once the I/O or the pin has ended.
 *
 * <p>KVM itself waits for its readers without a bound ({@code synchronize_srcu}); a VMM thread blocked in
 * a socket read has no such bound, so here the wait has one and its end is this error.
 */
public final class SlotBusyException extends KvmException {
    private final List<Integer> slotIds;
    private final int transfers;
    private final int pins;

    SlotBusyException(String operation, List<Integer> slotIds, int transfers, int pins, String why) {
        super(Errno.EBUSY, operation, why);
        this.slotIds = List.copyOf(slotIds);
        this.transfers = transfers;
        this.pins = pins;
    }

    /** The slots whose users did not let go (empty when only pins held the change back). */
    public List<Integer> slotIds() {
        return slotIds;
    }

    /** Channel transfers that still held those slots when the wait ended. */
    public int transfers() {
        return transfers;
    }

    /** Pins still open when the wait ended (0 for a change that does not wait for pins). */
    public int pins() {
        return pins;
    }
}
