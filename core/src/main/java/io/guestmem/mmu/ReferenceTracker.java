package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The references {@link FollowPfn} holds on guest pages, counted per gfn (and per pfn): what leak reports list
 * when a slot goes away or follow_pfn closes, and what callers ask ("does follow_pfn hold a reference to this
 * gfn/page?"). The deferred final put of a guest_memfd conversion is not here: it is the page state's own
 * count ({@link PrivatePages}), which each reference also holds.
 *
 * <p>Acquire and release take one lock (they are per fault, not per access); the queries too.
 */
public final class ReferenceTracker {

    private static final class Count {
        int n;
    }

    private final Map<Long, Count> byGfn = new HashMap<>();      // guarded by this
    private final Map<Long, Integer> byPfn = new HashMap<>();    // guarded by this
    private final Set<PageReference> live = new LinkedHashSet<>(); // guarded by this

    /** Takes a reference on {@code page} for guest frame {@code gfn} of {@code slot}, in the {@code guest} view. */
    PageReference acquire(Memslot slot, long gfn, RefcountedPage page, String holder, boolean guest) {
        PageReference r = new PageReference(this, slot, gfn, page, holder, guest);
        synchronized (this) {
            Count c = byGfn.computeIfAbsent(PoisonRegistry.key(slot.addressSpace(), gfn), k -> new Count());
            c.n++;
            if (KvmPfn.isRealPfn(page.pfn())) byPfn.merge(page.pfn(), 1, Integer::sum);
            live.add(r);
        }
        return r;
    }

    synchronized void release(PageReference r) {
        live.remove(r);
        long key = PoisonRegistry.key(r.addressSpace(), r.gfn());
        Count c = byGfn.get(key);
        if (c == null || c.n <= 0) throw new IllegalStateException("no reference held on " + r);
        if (KvmPfn.isRealPfn(r.pfn())) byPfn.computeIfPresent(r.pfn(), (k, v) -> v == 1 ? null : v - 1);
        if (--c.n == 0) byGfn.remove(key);
    }

    /** Whether the library holds a reference on guest frame {@code gfn} of address space 0. */
    public boolean holds(long gfn) {
        return holds(0, gfn);
    }

    public synchronized boolean holds(int addressSpace, long gfn) {
        return byGfn.containsKey(PoisonRegistry.key(addressSpace, gfn));
    }

    /** The number of references held on {@code gfn} of address space 0. */
    public int count(long gfn) {
        return count(0, gfn);
    }

    public synchronized int count(int addressSpace, long gfn) {
        Count c = byGfn.get(PoisonRegistry.key(addressSpace, gfn));
        return c == null ? 0 : c.n;
    }

    /** Whether the library holds a reference on host page {@code pfn} (through any gfn). */
    public synchronized boolean holdsPfn(long pfn) {
        return byPfn.containsKey(pfn);
    }

    /** The number of references held on guest frames {@code [gfnStart, gfnEnd)} of an address space. */
    public synchronized int countRange(int addressSpace, long gfnStart, long gfnEnd) {
        int n = 0;
        for (PageReference r : live) {
            if (r.addressSpace() == addressSpace && r.gfn() >= gfnStart && r.gfn() < gfnEnd) n++;
        }
        return n;
    }

    /** Every reference not released yet, oldest first. */
    public synchronized List<PageReference> unreleased() {
        return List.copyOf(live);
    }

    /** The unreleased references on gfns of {@code slot} (its address space and gfn range). */
    public synchronized List<PageReference> unreleased(Memslot slot) {
        List<PageReference> out = new ArrayList<>();
        for (PageReference r : live) {
            if (r.addressSpace() == slot.addressSpace() && slot.containsGfn(r.gfn())) out.add(r);
        }
        return out;
    }

    /** The number of references held. */
    public synchronized int size() {
        return live.size();
    }
}
