package io.guestmem.access;

import io.guestmem.memslot.Memslot;
import java.util.Arrays;

/**
 * The pages of one memslot to send in a migration round: the union of the VMM's own writes (its
 * {@link DirtyBitmap}) and, when merged, an external tracker's answer (KVM_GET_DIRTY_LOG, a dirty ring,
 * uffd-wp + PAGEMAP_SCAN). {@code bitmap} has bit {@code i} set for gfn {@code baseGfn + i}.
 *
 * @param slotId   the memslot's id
 * @param baseGfn  the slot's first gfn when the pages were collected
 * @param npages   the slot's size in pages
 * @param bitmap   {@link DirtyBitmap#wordsFor}{@code (npages)} words, owned by this value
 * @param fromVmm  pages the VMM wrote through {@link GuestMemory}
 * @param fromExternal pages the external tracker reported (0 when nothing was merged)
 */
public record DirtyPages(int slotId, long baseGfn, long npages, long[] bitmap, long fromVmm, long fromExternal) {

    /** Pages to send. */
    public long count() {
        return bitCount(bitmap);
    }

    /** Set bits of a bitmap. */
    static long bitCount(long[] bits) {
        long n = 0;
        for (long w : bits) n += Long.bitCount(w);
        return n;
    }

    public boolean isEmpty() {
        for (long w : bitmap) if (w != 0) return false;
        return true;
    }

    /** Whether gfn {@code gfn} is to be sent. */
    public boolean contains(long gfn) {
        long i = gfn - baseGfn;
        return i >= 0 && i < npages && (bitmap[(int) (i >>> 6)] & (1L << i)) != 0;
    }

    /** The gfns to send, ascending. */
    public long[] gfns() {
        long[] out = new long[(int) count()];
        int n = 0;
        for (int w = 0; w < bitmap.length; w++) {
            long v = bitmap[w];
            while (v != 0) {
                out[n++] = baseGfn + ((long) w << 6) + Long.numberOfTrailingZeros(v);
                v &= v - 1;
            }
        }
        return out;
    }

    /** ORs absolute gfns of {@code slot} into a bitmap; a gfn outside the slot is an IllegalArgumentException. */
    static long orGfns(long[] bitmap, Memslot slot, long[] gfns) {
        long n = 0;
        for (long g : gfns) {
            if (!slot.containsGfn(g))
                throw new IllegalArgumentException("gfn 0x" + Long.toHexString(g) + " is not in slot " + slot.id());
            long i = g - slot.baseGfn();
            bitmap[(int) (i >>> 6)] |= 1L << i;
            n++;
        }
        return n;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof DirtyPages d && d.slotId == slotId && d.baseGfn == baseGfn && d.npages == npages
                && Arrays.equals(d.bitmap, bitmap);
    }

    @Override
    public int hashCode() {
        return Long.hashCode(baseGfn) * 31 + Arrays.hashCode(bitmap);
    }

    @Override
    public String toString() {
        return "DirtyPages[slot " + slotId + ", " + count() + " of " + npages + " pages (vmm " + fromVmm
                + ", external " + fromExternal + ")]";
    }
}
