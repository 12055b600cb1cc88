package io.guestmem.access;

import io.guestmem.memslot.Memslot;

/**
 * The pages of one memslot to send in a migration round: the union of the VMM's own writes (its
 * {@link DirtyBitmap}) and, when merged, an external tracker's answer (KVM_GET_DIRTY_LOG, a dirty ring,
 * uffd-wp + PAGEMAP_SCAN). {@code words} has bit {@code i} set for gfn {@code baseGfn + i}, kept as its
 * non-zero words: the value's size follows the pages to send, not the slot's size (a 1 TiB slot with ten
 * pages written is ten words).
 *
 * @param slotId   the memslot's id
 * @param baseGfn  the slot's first gfn when the pages were collected
 * @param npages   the slot's size in pages
 * @param words    the bitmap's non-zero words
 * @param fromVmm  pages the VMM wrote through {@link GuestMemory}
 * @param fromExternal pages the external tracker reported (0 when nothing was merged)
 */
public record DirtyPages(int slotId, long baseGfn, long npages, SparseWords words, long fromVmm, long fromExternal) {

    /** Pages to send. */
    public long count() {
        return words.count();
    }

    /** Set bits of a bitmap. */
    static long bitCount(long[] bits) {
        long n = 0;
        for (long w : bits) n += Long.bitCount(w);
        return n;
    }

    public boolean isEmpty() {
        return words.words() == 0;
    }

    /** Whether gfn {@code gfn} is to be sent. */
    public boolean contains(long gfn) {
        long i = gfn - baseGfn;
        return i >= 0 && i < npages && (words.word((int) (i >>> 6)) & (1L << i)) != 0;
    }

    /** KVM_GET_DIRTY_LOG's layout of the same pages: {@link DirtyBitmap#wordsFor}{@code (npages)} words (a new array). */
    public long[] bitmap() {
        return words.dense(DirtyBitmap.wordsFor(npages));
    }

    /** The gfns to send, ascending. */
    public long[] gfns() {
        long[] out = new long[(int) count()];
        int n = 0;
        for (int k = 0; k < words.words(); k++) {
            long v = words.bits(k), base = baseGfn + ((long) words.index(k) << 6);
            while (v != 0) {
                out[n++] = base + Long.numberOfTrailingZeros(v);
                v &= v - 1;
            }
        }
        return out;
    }

    /** The slot-relative pages of absolute gfns of {@code slot}; a gfn outside the slot is an IllegalArgumentException. */
    static long[] pagesOf(Memslot slot, long[] gfns) {
        long[] out = new long[gfns.length];
        for (int k = 0; k < gfns.length; k++) {
            long g = gfns[k];
            if (!slot.containsGfn(g))
                throw new IllegalArgumentException("gfn 0x" + Long.toHexString(g) + " is not in slot " + slot.id());
            out[k] = g - slot.baseGfn();
        }
        return out;
    }

    @Override
    public String toString() {
        return "DirtyPages[slot " + slotId + ", " + count() + " of " + npages + " pages (vmm " + fromVmm
                + ", external " + fromExternal + ")]";
    }
}
