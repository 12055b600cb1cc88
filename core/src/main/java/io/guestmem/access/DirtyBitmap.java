package io.guestmem.access;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * The VMM's own dirty log of one memslot: bit {@code i} of word {@code i / 64} is page {@code i} of the slot
 * (KVM_GET_DIRTY_LOG's layout). Writes through {@link GuestMemory} mark it; KVM's dirty log never sees them.
 *
 * <h2>Why marking is race-free against {@link #getAndClear}</h2>
 * A writer stores its data, then {@link #mark}s: a full fence, a plain read of the word, and an atomic OR
 * only when the bit is clear (so writers hammering one page do not bounce the word's cache line). The
 * collector clears each word with an atomic exchange (itself a full barrier) and copies the pages after. With
 * a fence on both sides, "the writer saw the bit still set (and skipped the OR)" and "the collector's copy
 * missed the writer's data" cannot both happen (the store-buffering pattern), so a write is never lost: it
 * is either in the copy of this round or its bit is set for the next one.
 *
 * <p>Marking allocates nothing and takes no lock. Thread-safe.
 */
public final class DirtyBitmap {
    private static final VarHandle WORD = MethodHandles.arrayElementVarHandle(long[].class);

    private final long npages;
    private final long[] words;

    /** A clean bitmap of {@code npages} pages. */
    public DirtyBitmap(long npages) {
        if (npages <= 0 || npages > (long) Integer.MAX_VALUE * 64)
            throw new IllegalArgumentException("npages " + npages);
        this.npages = npages;
        this.words = new long[wordsFor(npages)];
    }

    /** Words of a bitmap of {@code npages} pages ({@code ceil(npages / 64)}). */
    public static int wordsFor(long npages) {
        return (int) ((npages + 63) >>> 6);
    }

    public long npages() {
        return npages;
    }

    /** Marks page {@code page} (call after the write it records). */
    public void mark(long page) {
        if (Long.compareUnsigned(page, npages) >= 0) throw new IndexOutOfBoundsException("page " + page + " of " + npages);
        VarHandle.fullFence();
        setBits((int) (page >>> 6), 1L << page);
    }

    /** Marks pages {@code [first, first + count)} with one fence (call after the write they record). */
    public void markRange(long first, long count) {
        if (count <= 0) return;
        if (first < 0 || count > npages - first)
            throw new IndexOutOfBoundsException("pages " + first + "+" + count + " of " + npages);
        VarHandle.fullFence();
        long last = first + count - 1;
        int w0 = (int) (first >>> 6), w1 = (int) (last >>> 6);
        long head = -1L << first, tail = -1L >>> (63 - (last & 63));
        if (w0 == w1) {
            setBits(w0, head & tail);
            return;
        }
        setBits(w0, head);
        for (int w = w0 + 1; w < w1; w++) setBits(w, -1L);
        setBits(w1, tail);
    }

    private void setBits(int w, long bits) {
        if (((long) WORD.getOpaque(words, w) & bits) != bits) WORD.getAndBitwiseOr(words, w, bits);
    }

    /** Whether page {@code page} is marked (a snapshot). */
    public boolean isDirty(long page) {
        if (Long.compareUnsigned(page, npages) >= 0) throw new IndexOutOfBoundsException("page " + page + " of " + npages);
        return ((long) WORD.getVolatile(words, (int) (page >>> 6)) & (1L << page)) != 0;
    }

    /** Marked pages now (a snapshot; concurrent marks may or may not be counted). */
    public long count() {
        long n = 0;
        for (int w = 0; w < words.length; w++) n += Long.bitCount((long) WORD.getVolatile(words, w));
        return n;
    }

    /** The marked pages, cleared atomically word by word (each word is an atomic exchange with 0). */
    public long[] getAndClear() {
        long[] out = new long[words.length];
        getAndClear(out);
        return out;
    }

    /**
     * Like {@link #getAndClear()} into the caller's array (at least {@link #wordsFor}{@code (npages)} long),
     * allocation-free; returns the number of pages collected.
     */
    public long getAndClear(long[] into) {
        if (into.length < words.length) throw new IllegalArgumentException("bitmap of " + into.length + " words < " + words.length);
        long n = 0;
        for (int w = 0; w < words.length; w++) {
            long v = (long) WORD.getVolatile(words, w);
            if (v != 0) v = (long) WORD.getAndSet(words, w, 0L);
            into[w] = v;
            n += Long.bitCount(v);
        }
        return n;
    }

    @Override
    public String toString() {
        return "DirtyBitmap[" + count() + " of " + npages + " pages dirty]";
    }
}
