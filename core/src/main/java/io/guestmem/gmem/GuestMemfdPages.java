package io.guestmem.gmem;

import io.guestmem.access.PageAccessPolicy;
import io.guestmem.mmu.FollGuest;
import io.guestmem.mmu.Mappability;
import io.guestmem.mmu.PrivatePages;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotSet;
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

    /** The region page backing {@code gfn} as {@code region index << 32 | page}, or -1. */
    private long locate(int addressSpace, long gfn) {
        MemslotSet set = memslots.current(addressSpace);
        int i = set.indexOf(gfn);
        if (i < 0) return -1;
        Memslot m = set.slotAt(i);
        GuestMemfdRegion[] rs = regions;
        long pageSize = set.geometry().pageSize();
        for (int k = 0; k < rs.length; k++) {
            GuestMemfdRegion r = rs[k];
            if (!r.isOpen()) continue;
            long offset;
            if (m.guestMemfd()) {
                if (r.backing() == GuestMemfdBacking.MEMFD_STAND_IN || r.guestMemfd().fd() != m.gmemFd()) continue;
                offset = m.gmemOffset() + (gfn - m.baseGfn()) * pageSize;
            } else {
                if (!r.hostMapped()) continue;
                long hva = m.userspaceAddr() + (gfn - m.baseGfn()) * pageSize;
                offset = hva - r.hostAddress();
                if (offset < 0 || offset >= r.size()) continue;
            }
            if (offset < 0 || offset >= r.size()) return -1;
            return ((long) k << 32) | (offset / r.pageSize());
        }
        return -1;
    }

    @Override
    public Mappability mappability(Memslot slot, long gfn) {
        return mappability(slot.addressSpace(), gfn);
    }

    /** {@link Mappability#ALL} for every gfn not backed by a registered guest_memfd region. */
    public Mappability mappability(int addressSpace, long gfn) {
        long loc = locate(addressSpace, gfn);
        if (loc < 0) return Mappability.ALL;
        return regions[(int) (loc >>> 32)].pageStates().mappability(loc & 0xffffffffL);
    }

    /**
     * The access policy: the host may read or write {@code gfn} through its mapping when the host's view (a
     * lookup without FOLL_GUEST) may use the page. Whether the slot may be written is the accessor's own check.
     */
    @Override
    public boolean mayAccess(Memslot slot, long gfn, boolean write) {
        return FollGuest.view(mappability(slot.addressSpace(), gfn), false).ok();
    }

    /**
     * Takes a reference on the guest_memfd page behind {@code gfn} in the view {@code guest} asks for (a
     * follow_pfn result the caller will release with {@link #put}); true for gfns no region backs (nothing to
     * count there). False when the page is not in that view.
     */
    @Override
    public boolean tryGet(int addressSpace, long gfn, boolean guest) {
        long loc = locate(addressSpace, gfn);
        if (loc < 0) return FollGuest.view(Mappability.ALL, guest).ok(); // ordinary memory is shared
        return regions[(int) (loc >>> 32)].pageStates().tryGet(loc & 0xffffffffL, guest);
    }

    /** Releases a reference taken by {@link #tryGet}; the final put of a converting page finishes it. */
    @Override
    public void put(int addressSpace, long gfn, boolean guest) {
        long loc = locate(addressSpace, gfn);
        if (loc < 0) return;
        regions[(int) (loc >>> 32)].pageStates().put(loc & 0xffffffffL, guest);
    }

    /** Whether the library holds a reference on the page behind {@code gfn}. */
    public boolean holds(int addressSpace, long gfn) {
        long loc = locate(addressSpace, gfn);
        if (loc < 0) return false;
        return regions[(int) (loc >>> 32)].pageStates().references(loc & 0xffffffffL) > 0;
    }
}
