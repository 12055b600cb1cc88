package io.guestmem.access;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * The VMM's own dirty log of one memslot: bit {@code i} of word {@code i / 64} is page {@code i} of the slot
 * (KVM_GET_DIRTY_LOG's layout). Writes through {@link GuestMemory} mark it; KVM's dirty log never sees them.
 *
 * <h2>Sparse: proportional to what was written</h2>
 * The words live in chunks of {@value #CHUNK_WORDS} (32768 pages: 128 MiB of 4 KiB pages), each allocated by
 * the first mark that needs it, and a summary bit per chunk says it may hold marks. A 1 TiB slot with ten pages
 * written holds ten chunks at most, and {@link #collect()} reads the summary (one word per 64 chunks) and those
 * chunks only: the cost of a harvest follows the writes, not the slot's size. The dense {@link #getAndClear}
 * forms stay for callers that want KVM's layout (they pay for the slot's size in the array they pass).
 *
 * <h2>Why marking is race-free against a harvest</h2>
 * A writer stores its data, then {@link #mark}s: a full fence, a plain read of the word, and an atomic OR
 * only when the bit is clear (so writers hammering one page do not bounce the word's cache line), then,
 * after an OR only, the same for the chunk's summary bit (a word bit found set needs no look at the summary:
 * whoever set it sets the summary bit after, or a collector that cleared the summary bit is about to take the
 * word). The collector clears a summary bit with an atomic exchange, then each word
 * of the chunk with one, and copies the pages after. With a fence on both sides, "the writer saw the bit still
 * set (and skipped the OR)" and "the collector's copy missed the writer's data" cannot both happen (the
 * store-buffering pattern), so a write is never lost: it is either in the copy of this round or its bit is set
 * for the next one. A summary bit set after the collector cleared it only makes the next round look at a
 * chunk; a word marked before its summary bit is seen by the collector that clears that summary bit later.
 *
 * <p>Marking allocates nothing and takes no lock once the page's chunk exists. Thread-safe.
 */
public final class DirtyBitmap {
    private static final VarHandle WORD = MethodHandles.arrayElementVarHandle(long[].class);
    private static final VarHandle CHUNK = MethodHandles.arrayElementVarHandle(long[][].class);
    /** Words per chunk (a power of two). */
    static final int CHUNK_WORDS = 512;
    private static final int CHUNK_SHIFT = 9;

    private final long npages;
    private final int nwords;
    private final long[][] chunks;
    private final long[] summary; // bit c: chunk c may hold marks
    private final boolean records;  // false: the log of a GuestMemory built with DirtyLogging.OFF

    /** A clean bitmap of {@code npages} pages. */
    public DirtyBitmap(long npages) {
        this(npages, true);
    }

    /**
     * The log of a slot of a {@link GuestMemory} built with {@link DirtyLogging#OFF}: marks cost a bounds check
     * and nothing else (no fence, no store), and every question about the marks is an IllegalStateException,
     * since the answer would be a lie.
     */
    static DirtyBitmap off(long npages) {
        return new DirtyBitmap(npages, false);
    }

    private DirtyBitmap(long npages, boolean records) {
        this.records = records;
        if (npages <= 0 || npages > (long) Integer.MAX_VALUE * 64)
            throw new IllegalArgumentException("npages " + npages);
        this.npages = npages;
        this.nwords = wordsFor(npages);
        int nchunks = (nwords + CHUNK_WORDS - 1) >>> CHUNK_SHIFT;
        this.chunks = new long[nchunks][];
        this.summary = new long[(nchunks + 63) >>> 6];
        // one chunk only (a slot up to 128 MiB of 4 KiB pages): allocated now and only as long as the slot
        // needs, so the fast path can keep its words next to the bucket (oneChunk)
        if (records && nchunks == 1) chunks[0] = new long[nwords];
    }

    /** The words of a log that has one chunk only (they never move), else null. */
    long[] oneChunk() {
        return chunks.length == 1 ? chunks[0] : null;
    }

    /**
     * The accessors' fast path of {@link #markRange}, from a fast bucket that keeps {@code words}, the log's
     * {@link #oneChunk} (null when it has more chunks or records nothing): true when pages {@code [first, last]}
     * are marked already, as a page written again before the next harvest is, for the fence and the load of one
     * word. On false the caller marks through the log, which fences itself: a second fence on a page's
     * first mark since a harvest, and none at all for a log that records nothing. Kept apart from the log's
     * path because a device loop inlines one of these per write (see {@link #setBits}).
     */
    static boolean alreadyMarked(long[] words, long first, long last) {
        if (words == null || (first >>> 6) != (last >>> 6)) return false;
        VarHandle.fullFence();
        long bits = bitsOf(first, last);
        return ((long) WORD.getOpaque(words, (int) (first >>> 6)) & bits) == bits;
    }

    /**
     * The bits of pages {@code [first, last]} within their one word: 2^(l+1) - 2^f, with Java's shifts taking
     * the count mod 64 (for l = 63 the first term wraps to 0, and 0 - 2^f is bits f..63).
     */
    private static long bitsOf(long first, long last) {
        return (2L << last) - (1L << first);
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
        if (Long.compareUnsigned(page, npages) >= 0) throw outside(page, 1);
        if (!records) return;
        VarHandle.fullFence();
        setBits((int) (page >>> 6), 1L << page);
    }

    /** Marks pages {@code [first, first + count)} with one fence (call after the write they record). */
    public void markRange(long first, long count) {
        if (count <= 0) return;
        if (first < 0 || count > npages - first) throw outside(first, count);
        if (!records) return;
        VarHandle.fullFence();
        long last = first + count - 1;
        int w0 = (int) (first >>> 6);
        if (w0 == (int) (last >>> 6)) setBits(w0, bitsOf(first, last));
        else setWords(w0, (int) (last >>> 6), first, last);
    }

    /** A range across words: out of line, so the accessors that inline the one-word case stay small. */
    private void setWords(int w0, int w1, long first, long last) {
        setBits(w0, -1L << first);
        for (int w = w0 + 1; w < w1; w++) setBits(w, -1L);
        setBits(w1, -1L >>> (63 - (last & 63)));
    }

    private IndexOutOfBoundsException outside(long first, long count) {
        return new IndexOutOfBoundsException((count == 1 ? "page " + first : "pages " + first + "+" + count) + " of " + npages);
    }

    /**
     * Sets {@code bits} in word {@code w}. The inlined part is the steady state of a page written again before
     * the next harvest: two loads and nothing stored. It must stay small: every typed store and copy of a
     * dirty-logged memory inlines it, and a caller that inlines several (a device's loop) otherwise reaches
     * C2's node budget and stops inlining the accessors themselves.
     */
    private void setBits(int w, long bits) {
        long[] chunk = (long[]) CHUNK.getAcquire(chunks, w >>> CHUNK_SHIFT);
        if (chunk == null || ((long) WORD.getOpaque(chunk, w & (CHUNK_WORDS - 1)) & bits) != bits) orBits(w, bits);
    }

    /** The first mark of these pages since a harvest: the word's OR, then the summary's. */
    private void orBits(int w, long bits) {
        int c = w >>> CHUNK_SHIFT;
        long[] chunk = (long[]) CHUNK.getAcquire(chunks, c);
        if (chunk == null) chunk = allocate(c);
        WORD.getAndBitwiseOr(chunk, w & (CHUNK_WORDS - 1), bits);
        long s = 1L << c; // (a volatile read: it must not pass the word's OR above, see the class comment)
        if (((long) WORD.getVolatile(summary, c >>> 6) & s) == 0) WORD.getAndBitwiseOr(summary, c >>> 6, s);
    }

    /** The first mark of chunk {@code c}: one writer's array wins, the others use it. */
    private long[] allocate(int c) {
        long[] fresh = new long[CHUNK_WORDS];
        long[] won = (long[]) CHUNK.compareAndExchangeRelease(chunks, c, (long[]) null, fresh);
        return won == null ? fresh : won;
    }

    private long word(int w) {
        long[] chunk = (long[]) CHUNK.getAcquire(chunks, w >>> CHUNK_SHIFT);
        return chunk == null ? 0 : (long) WORD.getVolatile(chunk, w & (CHUNK_WORDS - 1));
    }

    /** False for the log of a {@link DirtyLogging#OFF} memory, which records nothing. */
    public boolean records() {
        return records;
    }

    private void requireRecords(String op) {
        if (!records) throw new IllegalStateException(op + ": dirty logging is off (GuestMemory built with DirtyLogging.OFF): this log records no write");
    }

    /** Whether page {@code page} is marked (a snapshot). */
    public boolean isDirty(long page) {
        if (Long.compareUnsigned(page, npages) >= 0) throw new IndexOutOfBoundsException("page " + page + " of " + npages);
        requireRecords("isDirty");
        return (word((int) (page >>> 6)) & (1L << page)) != 0;
    }

    /** Marked pages now (a snapshot; concurrent marks may or may not be counted). */
    public long count() {
        requireRecords("count");
        long n = 0;
        for (int c = 0; c < chunks.length; c++) {
            long[] chunk = (long[]) CHUNK.getAcquire(chunks, c);
            if (chunk == null) continue;
            for (int i = 0; i < chunk.length; i++) n += Long.bitCount((long) WORD.getVolatile(chunk, i));
        }
        return n;
    }

    /** Chunks allocated so far (each {@value #CHUNK_WORDS} words): what the bitmap costs in memory. */
    public int chunksAllocated() {
        int n = 0;
        for (int c = 0; c < chunks.length; c++) if (CHUNK.getAcquire(chunks, c) != null) n++;
        return n;
    }

    /** The marked pages, cleared atomically word by word (each word is an atomic exchange with 0). */
    public long[] getAndClear() {
        long[] out = new long[nwords];
        getAndClear(out);
        return out;
    }

    /**
     * Like {@link #getAndClear()} into the caller's array (at least {@link #wordsFor}{@code (npages)} long),
     * allocation-free; returns the number of pages collected. Words of chunks with no mark are zeroed.
     */
    public long getAndClear(long[] into) {
        requireRecords("getAndClear");
        if (into.length < nwords) throw new IllegalArgumentException("bitmap of " + into.length + " words < " + nwords);
        java.util.Arrays.fill(into, 0, nwords, 0L);
        return harvest(into, null);
    }

    /**
     * The marked pages as the non-zero words only, cleared as they are read: time and space follow the chunks
     * written since the last harvest, not the slot's size.
     */
    public SparseWords collect() {
        requireRecords("collect");
        SparseWords.Builder b = new SparseWords.Builder();
        harvest(null, b);
        return b.build();
    }

    /** Clears what is marked into {@code dense} (by word index) or {@code sparse}; the pages collected. */
    private long harvest(long[] dense, SparseWords.Builder sparse) {
        long n = 0;
        for (int sw = 0; sw < summary.length; sw++) {
            long s = (long) WORD.getVolatile(summary, sw);
            if (s == 0) continue;
            s = (long) WORD.getAndSet(summary, sw, 0L);
            while (s != 0) {
                int c = (sw << 6) + Long.numberOfTrailingZeros(s);
                s &= s - 1;
                long[] chunk = (long[]) CHUNK.getAcquire(chunks, c); // published before its summary bit was set
                int base = c << CHUNK_SHIFT, end = Math.min(CHUNK_WORDS, nwords - base);
                for (int i = 0; i < end; i++) {
                    long v = (long) WORD.getVolatile(chunk, i);
                    if (v == 0) continue;
                    v = (long) WORD.getAndSet(chunk, i, 0L);
                    if (v == 0) continue;
                    n += Long.bitCount(v);
                    if (dense != null) dense[base + i] = v;
                    else sparse.add(base + i, v);
                }
            }
        }
        return n;
    }

    @Override
    public String toString() {
        if (!records) return "DirtyBitmap[off, " + npages + " pages]";
        return "DirtyBitmap[" + count() + " of " + npages + " pages dirty, " + chunksAllocated() + "/" + chunks.length + " chunks]";
    }
}
