package io.guestmem.access;

import io.guestmem.memslot.Memslot;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/**
 * The harvest of the VMM's own dirty log: per slot, the pages written through {@link GuestMemory} since the
 * last harvest (each slot's {@link DirtyBitmap}, cleared as it is read), merged with what an external
 * tracker reports (KVM's dirty log or ring, uffd-wp + PAGEMAP_SCAN), as one {@link DirtyPages} per slot.
 * Marking happens where the writes are ({@link SlotTable}, {@link ChunkWalk}); this is only the reading side.
 */
final class DirtyHarvest {
    private DirtyHarvest() {}

    /** Pages of slot {@code slotId} written through the API since the last collect; clears them. */
    static DirtyPages collect(SlotTable t, int slotId) {
        SlotMapping m = t.mappingOf(slotId);
        SparseWords vmm = m.dirty().collect();
        return new DirtyPages(slotId, m.slot().baseGfn(), m.slot().npages(), vmm, vmm.count(), 0);
    }

    /**
     * The VMM's writes of slot {@code slotId} (collected and cleared) plus {@code externalGfns}, absolute gfns
     * of the slot; a gfn outside it is an IllegalArgumentException, checked before the VMM's bits are cleared.
     */
    static DirtyPages collect(SlotTable t, int slotId, long[] externalGfns) {
        SlotMapping m = t.mappingOf(slotId);
        SparseWords ext = SparseWords.ofPages(DirtyPages.pagesOf(m.slot(), externalGfns)); // refused before any bit is cleared
        SparseWords vmm = m.dirty().collect();
        return new DirtyPages(slotId, m.slot().baseGfn(), m.slot().npages(), vmm.or(ext), vmm.count(), externalGfns.length);
    }

    /** The VMM's writes of slot {@code slotId} ORed with a KVM_GET_DIRTY_LOG-shaped bitmap of the slot. */
    static DirtyPages collectWithBitmap(SlotTable t, int slotId, long[] externalBitmap) {
        SlotMapping m = t.mappingOf(slotId);
        long npages = m.slot().npages();
        int words = DirtyBitmap.wordsFor(npages);
        if (externalBitmap.length != words)
            throw new IllegalArgumentException("bitmap of " + externalBitmap.length + " words for a slot of " + npages + " pages (" + words + " words)");
        if ((npages & 63) != 0 && (externalBitmap[words - 1] & (-1L << npages)) != 0)
            throw new IllegalArgumentException("bitmap has bits past the end of slot " + slotId);
        SparseWords vmm = m.dirty().collect();
        return new DirtyPages(slotId, m.slot().baseGfn(), npages, vmm.or(SparseWords.of(externalBitmap)), vmm.count(),
                DirtyPages.bitCount(externalBitmap));
    }

    /** Every slot of {@code t} in gfn order, each merged with {@code externalGfns.apply(slot)} (null or empty: none). */
    static List<DirtyPages> pagesToSend(SlotTable t, Function<Memslot, long[]> externalGfns) {
        t.checkOpen("pagesToSend"); // a closed memory has no slot left: an empty list would lose the round
        List<DirtyPages> out = new ArrayList<>();
        for (Memslot s : t.set.slots()) {
            long[] ext = externalGfns == null ? null : externalGfns.apply(s);
            out.add(ext == null ? collect(t, s.id()) : collect(t, s.id(), ext));
        }
        return out;
    }
}
