package io.guestmem.access;

import java.util.Arrays;

/**
 * A bitmap kept as its non-zero 64-bit words only: word {@code index[k]} (ascending) holds {@code bits[k]}, and
 * every other word is zero. What a harvest of a sparse guest returns: its size is the pages written, not the
 * slot's size. Immutable once built.
 */
public final class SparseWords {
    static final SparseWords EMPTY = new SparseWords(new int[0], new long[0], 0);

    private final int[] index;
    private final long[] bits;
    private final int n;

    private SparseWords(int[] index, long[] bits, int n) {
        this.index = index;
        this.bits = bits;
        this.n = n;
    }

    /** Non-zero words. */
    public int words() {
        return n;
    }

    /** The word index of the {@code k}-th non-zero word. */
    public int index(int k) {
        return index[k < n ? k : fail(k)];
    }

    /** The bits of the {@code k}-th non-zero word. */
    public long bits(int k) {
        return bits[k < n ? k : fail(k)];
    }

    private int fail(int k) {
        throw new IndexOutOfBoundsException("word " + k + " of " + n);
    }

    /** Set bits. */
    public long count() {
        long c = 0;
        for (int k = 0; k < n; k++) c += Long.bitCount(bits[k]);
        return c;
    }

    /** The word at index {@code w} (0 when it is not kept). */
    public long word(int w) {
        int k = Arrays.binarySearch(index, 0, n, w);
        return k >= 0 ? bits[k] : 0;
    }

    /** The dense form of {@code nwords} words (what KVM_GET_DIRTY_LOG fills). */
    public long[] dense(int nwords) {
        long[] out = new long[nwords];
        for (int k = 0; k < n; k++) out[index[k]] = bits[k];
        return out;
    }

    /** The sparse form of a dense bitmap. */
    static SparseWords of(long[] dense) {
        Builder b = new Builder();
        for (int w = 0; w < dense.length; w++) if (dense[w] != 0) b.add(w, dense[w]);
        return b.build();
    }

    /** This bitmap ORed with {@code other}. */
    SparseWords or(SparseWords other) {
        if (other.n == 0) return this;
        if (n == 0) return other;
        Builder b = new Builder();
        int i = 0, j = 0;
        while (i < n || j < other.n) {
            if (j == other.n || (i < n && index[i] < other.index[j])) b.add(index[i], bits[i++]);
            else if (i == n || other.index[j] < index[i]) b.add(other.index[j], other.bits[j++]);
            else b.add(index[i], bits[i++] | other.bits[j++]);
        }
        return b.build();
    }

    /** The bits of the sorted page numbers {@code pages} (duplicates allowed). */
    static SparseWords ofPages(long[] pages) {
        long[] p = pages.clone();
        Arrays.sort(p);
        Builder b = new Builder();
        int k = 0;
        while (k < p.length) {
            int w = (int) (p[k] >>> 6);
            long v = 0;
            while (k < p.length && (int) (p[k] >>> 6) == w) v |= 1L << p[k++];
            b.add(w, v);
        }
        return b.build();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof SparseWords s && Arrays.equals(index, 0, n, s.index, 0, s.n) && Arrays.equals(bits, 0, n, s.bits, 0, s.n);
    }

    @Override
    public int hashCode() {
        int h = 1;
        for (int k = 0; k < n; k++) h = h * 31 + index[k] * 17 + Long.hashCode(bits[k]);
        return h;
    }

    /** Appends words in ascending index order. */
    static final class Builder {
        private int[] index = new int[8];
        private long[] bits = new long[8];
        private int n;

        void add(int w, long v) {
            if (n > 0 && w <= index[n - 1]) throw new IllegalStateException("word " + w + " after " + index[n - 1]);
            if (n == index.length) {
                index = Arrays.copyOf(index, n * 2);
                bits = Arrays.copyOf(bits, n * 2);
            }
            index[n] = w;
            bits[n++] = v;
        }

        SparseWords build() {
            return n == 0 ? EMPTY : new SparseWords(index, bits, n);
        }
    }
}
