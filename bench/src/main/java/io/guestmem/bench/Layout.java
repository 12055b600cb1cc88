package io.guestmem.bench;

/**
 * The guest-physical layout every memory bench shares with the references in {@code bench/reference/}:
 * {@code slots} slots of 2 MiB separated by 1 MiB gaps, slot {@code i} at gpa {@code i * 3 MiB}, and the
 * same xorshift64 gpa sequence as the Rust (vm-memory) and C (limit) programs, so that every side touches
 * the same addresses in the same order.
 */
final class Layout {
    static final long SLOT = 2L << 20, GAP = 1L << 20, STRIDE = SLOT + GAP;
    /** Length of the precomputed address sequence (a power of two: index with {@code & MASK}). */
    static final int N = 1 << 16, MASK = N - 1;

    private Layout() {}

    static long slotGpa(int i) {
        return i * STRIDE;
    }

    /**
     * The reference sequence: {@code x ^= x<<13; x ^= x>>>7; x ^= x<<17}, slot {@code x % slots} (unsigned),
     * offset {@code ((x >>> 20) % (SLOT - 4096)) & ~7}: an 8-byte aligned gpa that leaves room for a 4 KiB
     * access from its page start.
     */
    static long[] randomGpas(int slots) {
        long[] g = new long[N];
        long x = 0x9E3779B97F4A7C15L;
        for (int i = 0; i < N; i++) {
            x ^= x << 13;
            x ^= x >>> 7;
            x ^= x << 17;
            long s = Long.remainderUnsigned(x, slots);
            g[i] = (s * STRIDE + Long.remainderUnsigned(x >>> 20, SLOT - 4096)) & ~7L;
        }
        return g;
    }

    /** Page after page through slot after slot (wrapping), the access pattern of a linear copy. */
    static long[] sequentialGpas(int slots, long pageSize) {
        long[] g = new long[N];
        long perSlot = SLOT / pageSize;
        for (int i = 0; i < N; i++) {
            long slot = (i / perSlot) % slots, page = i % perSlot;
            g[i] = slot * STRIDE + page * pageSize;
        }
        return g;
    }
}
