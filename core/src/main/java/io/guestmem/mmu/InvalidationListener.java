package io.guestmem.mmu;

/**
 * Called by {@link MmuNotifier} for every invalidation, like the handlers KVM runs from
 * {@code kvm_mmu_notifier_invalidate_range_start} (zap SPTEs, {@code gfn_to_pfn_cache_invalidate_start}).
 *
 * <p>Both methods run under the notifier's lock, {@code invalidateRangeStart} after the in-progress count and
 * range are visible to readers and before the caller changes the mapping, {@code invalidateRangeEnd} after
 * the sequence was bumped. A listener drops what it cached for the ranges (for hva-keyed caches:
 * {@link Invalidation#hvaStart()}..{@link Invalidation#hvaEnd()}); it must be quick, must not throw, and must
 * not start or end an invalidation itself.
 */
public interface InvalidationListener {
    void invalidateRangeStart(Invalidation invalidation);

    default void invalidateRangeEnd(Invalidation invalidation) {}
}
