package io.guestmem.mmu;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Library-level poison marks: a pfn or a gfn marked here makes {@link FollowPfn} answer
 * {@link PfnError#HWPOISON} exactly as when {@code /proc/kpageflags} reports HWPOISON for the pfn, without
 * harming the host (real {@code MADV_HWPOISON} takes the page away for good). Tests and the guest_memfd
 * state machine inject poison this way. The checks are a single volatile read while nothing is marked.
 */
public final class PoisonRegistry {
    private final Set<Long> pfns = ConcurrentHashMap.newKeySet();
    private final Set<Long> gfns = ConcurrentHashMap.newKeySet();
    private volatile boolean any;
    private volatile java.util.function.LongPredicate pfnSource; // another owner's marks (gmem's HwPoison), or null

    /**
     * Also answers pfns {@code source} reports poisoned (e.g. {@code io.guestmem.gmem.HwPoison::marked}), so one
     * set of marks feeds follow_pfn and the guest_memfd side alike. Must be quick and allocation-free; null: none.
     */
    public void setPfnSource(java.util.function.LongPredicate source) {
        pfnSource = source;
    }

    /** Marks a host pfn poisoned. */
    public void poisonPfn(long pfn) {
        if (!KvmPfn.isRealPfn(pfn)) throw new IllegalArgumentException("not a pfn: " + KvmPfn.describe(pfn));
        pfns.add(pfn);
        any = true;
    }

    /** Marks guest frame {@code gfn} of {@code addressSpace} poisoned (whatever pfn backs it). */
    public void poisonGfn(int addressSpace, long gfn) {
        gfns.add(key(addressSpace, gfn));
        any = true;
    }

    public void unpoisonPfn(long pfn) {
        pfns.remove(pfn);
        any = !pfns.isEmpty() || !gfns.isEmpty();
    }

    public void unpoisonGfn(int addressSpace, long gfn) {
        gfns.remove(key(addressSpace, gfn));
        any = !pfns.isEmpty() || !gfns.isEmpty();
    }

    public void clear() {
        pfns.clear();
        gfns.clear();
        any = false;
    }

    public boolean isPfnPoisoned(long pfn) {
        java.util.function.LongPredicate src = pfnSource;
        return (any && pfns.contains(pfn)) || (src != null && src.test(pfn));
    }

    public boolean isGfnPoisoned(int addressSpace, long gfn) {
        return any && gfns.contains(key(addressSpace, gfn));
    }

    static long key(int addressSpace, long gfn) {
        return gfn ^ ((long) addressSpace << 56);
    }
}
