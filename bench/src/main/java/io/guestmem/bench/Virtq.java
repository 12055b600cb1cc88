package io.guestmem.bench;

import io.guestmem.access.GuestMemory;

/**
 * The split virtqueue the virtq-walk benches share with {@code bench/reference/limit/vmlimit.c --virtq} and
 * {@code bench/reference/vm-memory/src/bin/virtq.rs}: 256 entries in slot 0 of the {@link Layout} (descriptor
 * table at gpa 0, avail ring at 0x1000, used ring at 0x2000), chains built from the references' xorshift64:
 * <ol>
 *   <li>the descriptor indices 0..255 shuffled (Fisher-Yates from the top: {@code j = x % (i + 1)});</li>
 *   <li>cut into chains: per chain one step, {@code 1 + x % 4} descriptors (cut at 256); then per descriptor
 *       one step x: len {@code 64 << (x & 3)}, device-writable when {@code (x >> 2) & 1}, buffer in slot
 *       {@code 1 + (x >> 8) % (slots - 1)} at offset {@code ((x >> 20) % (2 MiB - 4096)) & ~63}, NEXT on
 *       all but the last.</li>
 * </ol>
 * The avail ring's 256 entries name the chain heads in turn ({@code ring[k] = head[k % chains]}): a round of
 * 256 avail entries is 256 chains walked, every round the same work (a chain is walked more than once per
 * round; a device model does not care).
 */
final class Virtq {
    static final int QSIZE = 256;
    static final long DESC = 0, AVAIL = 0x1000, USED = 0x2000;
    static final int F_NEXT = 1, F_WRITE = 2;

    /** The descriptor table as built, and the heads in avail order. */
    record Chains(long[] addr, int[] len, int[] flags, int[] next, int[] heads, long writtenPerRound) {}

    private Virtq() {}

    static long xorshift(long x) {
        x ^= x << 13;
        x ^= x >>> 7;
        x ^= x << 17;
        return x;
    }

    static Chains build(int slots) {
        if (slots < 2) throw new IllegalArgumentException("the virtq walk needs slot 0 for the rings and data slots: " + slots);
        long x = 0x9E3779B97F4A7C15L;
        int[] idx = new int[QSIZE];
        for (int i = 0; i < QSIZE; i++) idx[i] = i;
        for (int i = QSIZE - 1; i > 0; i--) {
            x = xorshift(x);
            int j = (int) Long.remainderUnsigned(x, i + 1);
            int t = idx[i]; idx[i] = idx[j]; idx[j] = t;
        }
        long[] addr = new long[QSIZE];
        int[] len = new int[QSIZE], flags = new int[QSIZE], next = new int[QSIZE];
        int[] heads = new int[QSIZE];
        int chains = 0;
        long[] chainWritten = new long[QSIZE];
        for (int pos = 0; pos < QSIZE; ) {
            x = xorshift(x);
            int n = (int) Math.min(1 + Long.remainderUnsigned(x, 4), QSIZE - pos);
            heads[chains] = idx[pos];
            for (int k = 0; k < n; k++) {
                int d = idx[pos + k];
                x = xorshift(x);
                len[d] = 64 << (int) (x & 3);
                boolean write = ((x >>> 2) & 1) != 0;
                long slot = 1 + Long.remainderUnsigned(x >>> 8, slots - 1);
                addr[d] = slot * Layout.STRIDE + (Long.remainderUnsigned(x >>> 20, Layout.SLOT - 4096) & ~63L);
                flags[d] = (write ? F_WRITE : 0) | (k < n - 1 ? F_NEXT : 0);
                next[d] = k < n - 1 ? idx[pos + k + 1] : 0;
                if (write) chainWritten[chains] += len[d];
            }
            chains++;
            pos += n;
        }
        int[] avail = new int[QSIZE];
        long written = 0;
        for (int k = 0; k < QSIZE; k++) {
            avail[k] = heads[k % chains];
            written += chainWritten[k % chains];
        }
        return new Chains(addr, len, flags, next, avail, written);
    }

    /** Writes the descriptor table and the avail ring (idx 0) and zeroes the used ring, through {@code mem}. */
    static void install(GuestMemory mem, Chains c) {
        for (int d = 0; d < QSIZE; d++) {
            long g = DESC + 16L * d;
            mem.writeU64(g, c.addr()[d]);
            mem.writeU32(g + 8, c.len()[d]);
            mem.writeU16(g + 12, c.flags()[d]);
            mem.writeU16(g + 14, c.next()[d]);
        }
        mem.writeU16(AVAIL, 0);
        mem.writeU16(AVAIL + 2, 0);
        for (int k = 0; k < QSIZE; k++) mem.writeU16(AVAIL + 4 + 2L * k, c.heads()[k]);
        mem.fill(USED, 4 + 8L * QSIZE + 2, (byte) 0);
    }
}
