package io.guestmem.access;

import io.guestmem.host.HostRegion;
import io.guestmem.host.RegionView;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotSet;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * One slot's backing as {@link GuestMemory} holds it: the slot, the registered region whose range contains
 * the slot's hva range, the slot's own view of it (null when no registered region backs the slot), the
 * VMM's dirty log of the slot, and the hold counter of the view (channel transfers in it now).
 */
record SlotMapping(Memslot slot, HostRegion region, RegionView view, DirtyBitmap dirty, SlotHold hold) {

    boolean sameRangeAs(Memslot m) {
        return slot.baseGfn() == m.baseGfn() && slot.npages() == m.npages()
                && slot.userspaceAddr() == m.userspaceAddr();
    }

    /**
     * The mappings of {@code set}, given the previous table's: a slot keeps its view while its gfn range and hva
     * stay and its region is open (FLAGS_ONLY changes), and with it its hold counter; a moved or newly backed
     * slot gets a new view (and a new hold counter) from the first open region of {@code regions} containing
     * it. The views that no longer serve (slots gone, moved,
     * or on a closing region) are added to {@code stale}: the caller closes them once a table without them is
     * published. O(slots): for a whole rebuild; one memslot change uses {@link #remapOne}.
     */
    static Map<Integer, SlotMapping> remap(MemslotSet set, SlotTable previous, List<HostRegion> regions,
                                           List<RegionView> stale, DirtyLogging logging) {
        int shift = set.geometry().shift();
        Map<Integer, SlotMapping> next = new HashMap<>();
        for (Memslot s : set.slots()) next.put(s.id(), remapOne(s, shift, previous.mappingOrNull(s.id()), regions, stale, logging));
        for (SlotMapping m : previous.mappings()) {
            if (!next.containsKey(m.slot().id()) && m.view() != null) stale.add(m.view());
        }
        return next;
    }

    /** The mapping of slot {@code s} given its previous one ({@code old}, null for a new slot), as {@link #remap} says. */
    static SlotMapping remapOne(Memslot s, int shift, SlotMapping old, List<HostRegion> regions, List<RegionView> stale,
                                DirtyLogging logging) {
        if (old != null && old.view() != null && old.sameRangeAs(s) && old.region().isOpen()) {
            return new SlotMapping(s, old.region(), old.view(), old.dirty(), old.hold());
        }
        if (old != null && old.view() != null) stale.add(old.view());
        long len = s.npages() << shift;
        HostRegion r = null;
        for (HostRegion candidate : regions) {
            if (candidate.isOpen() && candidate.contains(s.userspaceAddr(), len)) {
                r = candidate;
                break;
            }
        }
        RegionView v = r == null ? null : r.view(s.userspaceAddr() - r.address(), len);
        // A MOVE keeps the dirty log (same memory, as KVM keeps the slot's bitmap); a new slot starts clean.
        DirtyBitmap d = old != null && old.slot().npages() == s.npages() ? old.dirty()
                : logging == DirtyLogging.ON ? new DirtyBitmap(s.npages()) : DirtyBitmap.off(s.npages());
        return new SlotMapping(s, r, v, d, new SlotHold());
    }
}
