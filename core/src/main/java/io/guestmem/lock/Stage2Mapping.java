package io.guestmem.lock;

import io.guestmem.memslot.Memslot;
import io.guestmem.procfs.PagemapEntry;

import java.util.BitSet;

/**
 * A copy of a locked slot's "stage-2 mapping": for every page {@code i} of the slot (gfn
 * {@code slot.baseGfn() + i}), the pfn pagemap reported when it was pinned, whether the entry is writable and
 * whether an invalidation has zapped it since.
 *
 * @param slot        the slot as it was locked
 * @param mode        the lock mode
 * @param pfns        one pfn per base page: a real pfn, or {@link PagemapEntry#PFN_HIDDEN} when this process may
 *                    not see pfns (never 0)
 * @param writable    pages mapped writable (all of them for READ_WRITE; those relaxed by a write for READ)
 * @param invalidated pages an MMU-notifier invalidation zapped after the lock: their pfn is no longer trusted
 */
public record Stage2Mapping(Memslot slot, LockMode mode, long[] pfns, BitSet writable, BitSet invalidated) {
    public Stage2Mapping {
        pfns = pfns.clone();
        writable = (BitSet) writable.clone();
        invalidated = (BitSet) invalidated.clone();
    }

    @Override
    public long[] pfns() {
        return pfns.clone();
    }

    @Override
    public BitSet writable() {
        return (BitSet) writable.clone();
    }

    @Override
    public BitSet invalidated() {
        return (BitSet) invalidated.clone();
    }

    /** The pfn of gfn, {@link PagemapEntry#PFN_NONE} when zapped by an invalidation or outside the slot. */
    public long pfn(long gfn) {
        if (!slot.containsGfn(gfn)) return PagemapEntry.PFN_NONE;
        int i = (int) (gfn - slot.baseGfn());
        return invalidated.get(i) ? PagemapEntry.PFN_NONE : pfns[i];
    }

    public boolean isWritable(long gfn) {
        return slot.containsGfn(gfn) && writable.get((int) (gfn - slot.baseGfn()));
    }
}
