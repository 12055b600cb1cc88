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
     * The mappings of {@code set}, given the previous ones: a slot keeps its view while its gfn range and hva
     * stay and its region is open (FLAGS_ONLY changes), and with it its hold counter; a moved or newly backed
     * slot gets a new view (and a new hold counter) from the first open region of {@code regions} containing
     * it. The views that no longer serve (slots gone, moved,
     * or on a closing region) are added to {@code stale}: the caller closes them once a table without them is
     * published.
     */
    static Map<Integer, SlotMapping> remap(MemslotSet set, Map<Integer, SlotMapping> previous, List<HostRegion> regions,
                                           List<RegionView> stale) {
        int shift = set.geometry().shift();
        Map<Integer, SlotMapping> next = new HashMap<>();
        for (Memslot s : set.slots()) {
            SlotMapping old = previous.get(s.id());
            if (old != null && old.view() != null && old.sameRangeAs(s) && old.region().isOpen()) {
                next.put(s.id(), new SlotMapping(s, old.region(), old.view(), old.dirty(), old.hold()));
                continue;
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
            DirtyBitmap d = old != null && old.slot().npages() == s.npages() ? old.dirty() : new DirtyBitmap(s.npages());
            next.put(s.id(), new SlotMapping(s, r, v, d, new SlotHold()));
        }
        for (Map.Entry<Integer, SlotMapping> e : previous.entrySet()) {
            if (!next.containsKey(e.getKey()) && e.getValue().view() != null) stale.add(e.getValue().view());
        }
        return next;
    }
}
