package io.guestmem.kvm;

import io.guestmem.memslot.Memslot;

/**
 * Tracks which pages of one memslot were written. Each {@link #collect()} returns the gfns written since
 * the previous one (or since the tracker started) and starts a new period.
 */
public interface SlotDirtyTracker extends AutoCloseable {
    /** Which mechanism, for reports: {@code KVM_GET_DIRTY_LOG}, {@code KVM dirty ring}, {@code uffd-wp + PAGEMAP_SCAN}. */
    String name();

    Memslot slot();

    /** The written gfns, ascending and distinct; re-arms tracking for the next period. */
    long[] collect();

    @Override
    void close();
}
