package io.guestmem.mmu;

import io.guestmem.procfs.KPageFlag;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Whether a page is hardware-poisoned, for follow_pfn's HWPOISON answer (KVM returns {@code -EHWPOISON} for a
 * poisoned folio and KVM_RUN fails with it): the library's one poison decision, over two sources. The
 * kernel's own {@link KPageFlag#HWPOISON} bit from /proc/kpageflags, set for real only by a memory failure or
 * {@code MADV_HWPOISON} (which takes the page out of service for good), and library-level marks on a pfn or a
 * gfn that tests, the guest_memfd side and a VMM that learned of an error elsewhere set without harming the
 * host. {@link FollowPfn} and {@link FollowPfnBatch} both ask {@link #isPoisoned(long, long)}.
 *
 * <p>The checks are a single volatile read while nothing is marked; none of them allocates.
 */
public final class PoisonRegistry {
    private final Set<Long> pfns = ConcurrentHashMap.newKeySet();
    private final Set<Long> gfns = ConcurrentHashMap.newKeySet();
    private volatile boolean any;

    /** Marks a host pfn poisoned (no kernel state changes). */
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

    /** Removes a library mark on {@code pfn} (the kernel's bit, if any, stays). */
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

    /** Whether the library marked {@code pfn} (the kernel's bit not consulted). */
    public boolean isPfnPoisoned(long pfn) {
        return any && pfns.contains(pfn);
    }

    /**
     * The decision on a kpageflags word already read for {@code pfn} ({@link RefcountedPage#UNKNOWN_FLAGS} when
     * it could not be read): the kernel's HWPOISON bit, or the library's mark.
     */
    public boolean isPoisoned(long pfn, long kpageflags) {
        return (kpageflags != RefcountedPage.UNKNOWN_FLAGS && KPageFlag.HWPOISON.in(kpageflags)) || isPfnPoisoned(pfn);
    }

    public boolean isGfnPoisoned(int addressSpace, long gfn) {
        return any && gfns.contains(key(addressSpace, gfn));
    }

    static long key(int addressSpace, long gfn) {
        return gfn ^ ((long) addressSpace << 56);
    }
}
