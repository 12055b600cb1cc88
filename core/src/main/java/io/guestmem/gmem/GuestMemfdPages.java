package io.guestmem.gmem;

import io.guestmem.access.PageAccessPolicy;
import io.guestmem.mmu.FollGuest;
import io.guestmem.mmu.GuestMemfdResolution;
import io.guestmem.mmu.Mappability;
import io.guestmem.mmu.PrivatePages;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import java.util.Arrays;

/**
 * The gfn view of the library's guest_memfd regions over one {@link Memslots}: which region page backs a gfn
 * (a GUEST_MEMFD slot names its guest_memfd by fd and offset; a stand-in region's plain slot is found by its
 * userspace_addr), and that page's state ({@link GuestMemfdRegion#pageStates()}) by gfn. It is follow_pfn's
 * {@link PrivatePages} (mappability and references) and the guest-memory accessors' {@link PageAccessPolicy}
 * (the host's view: {@link FollGuest#view} without FOLL_GUEST), so one state machine answers both. Lookups
 * read the current memslot set and a copy-on-write array of regions: no allocation, no syscall.
 */
public final class GuestMemfdPages implements PrivatePages, PageAccessPolicy {
    private final Memslots memslots;
    private volatile GuestMemfdRegion[] regions = new GuestMemfdRegion[0];

    public GuestMemfdPages(Memslots memslots) {
        this.memslots = memslots;
    }

    public synchronized void register(GuestMemfdRegion r) {
        GuestMemfdRegion[] a = Arrays.copyOf(regions, regions.length + 1);
        a[a.length - 1] = r;
        regions = a;
    }

    public synchronized void unregister(GuestMemfdRegion r) {
        regions = Arrays.stream(regions).filter(x -> x != r).toArray(GuestMemfdRegion[]::new);
    }

    /**
     * The registered, open region whose page backs {@code gfn} of {@code m}, or null. The slot is the caller's
     * (the one a lookup validated, or the one a reference was taken through), not re-read: a reference taken
     * before the slot was deleted still finds its page when it is put back.
     */
    private GuestMemfdRegion regionOf(Memslot m, long gfn) {
        for (GuestMemfdRegion r : regions) if (offsetIn(r, m, gfn) >= 0) return r;
        return null;
    }

    /** The offset in {@code r} of the page backing {@code gfn} of {@code m}, or -1 when {@code r} does not back it. */
    private long offsetIn(GuestMemfdRegion r, Memslot m, long gfn) {
        if (!r.isOpen() || !m.containsGfn(gfn)) return -1;
        long pageSize = memslots.geometry().pageSize();
        long offset;
        if (m.guestMemfd()) {
            if (r.backing() == GuestMemfdBacking.MEMFD_STAND_IN || r.guestMemfd().fd() != m.gmemFd()) return -1;
            offset = m.gmemOffset() + (gfn - m.baseGfn()) * pageSize;
        } else {
            if (!r.hostMapped()) return -1;
            offset = m.userspaceAddr() + (gfn - m.baseGfn()) * pageSize - r.hostAddress();
        }
        return offset >= 0 && offset < r.size() ? offset : -1;
    }

    private long pageOf(GuestMemfdRegion r, Memslot m, long gfn) {
        return offsetIn(r, m, gfn) / r.pageSize();
    }

    /**
     * Every GUEST_MEMFD slot, and a plain slot whose userspace_addr range meets the host mapping of a
     * registered region (a stand-in's slot, or one over a guest_memfd's mmap): their private pages are
     * refused to the accessors as a GUEST_MEMFD slot's are. A region is registered before its slot is set
     * ({@code VmMemory.addGuestMemfd}), so the layout built for the slot already sees it.
     */
    @Override
    public boolean governs(Memslot slot) {
        if (slot.guestMemfd()) return true;
        long lo = slot.userspaceAddr(), hi = lo + slot.npages() * memslots.geometry().pageSize();
        for (GuestMemfdRegion r : regions) {
            if (r.isOpen() && r.hostMapped() && r.hostAddress() < hi && lo < r.hostAddress() + r.size()) return true;
        }
        return false;
    }

    /** {@link Mappability#ALL} for every gfn no registered guest_memfd region backs. */
    @Override
    public Mappability mappability(Memslot slot, long gfn) {
        GuestMemfdRegion r = regionOf(slot, gfn);
        return r == null ? Mappability.ALL : r.pageStates().mappability(pageOf(r, slot, gfn));
    }

    /** {@link #mappability(Memslot, long)} of the current slot holding {@code gfn} (ALL outside every slot). */
    public Mappability mappability(int addressSpace, long gfn) {
        Memslot m = memslots.current(addressSpace).findByGfn(gfn);
        return m == null ? Mappability.ALL : mappability(m, gfn);
    }

    /**
     * The access policy: the host may read or write {@code gfn} through its mapping when the host's view (a
     * lookup without FOLL_GUEST) may use the page. Whether the slot may be written is the accessor's own check.
     */
    @Override
    public boolean mayAccess(Memslot slot, long gfn, boolean write) {
        return FollGuest.view(mappability(slot, gfn), false).ok();
    }

    /**
     * Takes a reference on the guest_memfd page behind {@code gfn} in the view {@code guest} asks for (a
     * follow_pfn result the caller will release with {@link #put}); for gfns no region backs, nothing is counted
     * and the answer is the rule's for shared memory. False when the page is not in that view.
     */
    @Override
    public boolean tryGet(Memslot slot, long gfn, boolean guest) {
        GuestMemfdRegion r = regionOf(slot, gfn);
        if (r == null) return FollGuest.view(Mappability.ALL, guest).ok(); // ordinary memory is shared
        return r.pageStates().tryGet(pageOf(r, slot, gfn), guest);
    }

    /** Releases a reference taken by {@link #tryGet} through the same slot; the final put of a converting page finishes it. */
    @Override
    public void put(Memslot slot, long gfn, boolean guest) {
        GuestMemfdRegion r = regionOf(slot, gfn);
        if (r != null) r.pageStates().put(pageOf(r, slot, gfn), guest);
    }

    /**
     * A private page of a registered region, resolved through the region's file and offset
     * ({@link GuestMemfdRegion#resolveForGuest}): every private page here is a guest_memfd's (or its stand-in's),
     * so follow_pfn never faults one in through the hva. Null for gfns no region backs.
     */
    @Override
    public GuestMemfdResolution resolvePrivate(Memslot slot, long gfn) {
        GuestMemfdRegion r = regionOf(slot, gfn);
        return r == null ? null : r.resolveForGuest(offsetIn(r, slot, gfn));
    }

    /** Whether the library holds a reference on the page behind {@code gfn} (current slots). */
    public boolean holds(int addressSpace, long gfn) {
        Memslot m = memslots.current(addressSpace).findByGfn(gfn);
        GuestMemfdRegion r = m == null ? null : regionOf(m, gfn);
        return r != null && r.pageStates().references(pageOf(r, m, gfn)) > 0;
    }
}
