package io.guestmem.bench;

import io.guestmem.access.GuestMemory;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * A dependent chain of u64 loads through {@link GuestMemory}: {@code nodes} nodes at the first distinct
 * 64-byte-aligned xorshift gpas of the 512-slot {@link Layout} (slot {@code x % 512}, offset
 * {@code ((x >> 20) % (2 MiB - 4096)) & ~63}), linked in that order, each holding the next node's gpa: every
 * read's address comes from the one before, so nothing overlaps (a device following a linked structure in guest
 * memory). ns per access. Compare with the C limit's {@code chase_hva} (the node holds the next host address:
 * the hardware's dependent-load latency) and {@code chase_gpa} (the next gpa, through a flat table per MiB), and
 * vm-memory's {@code chase_gpa} ({@code read_obj::<u64>}), same nodes, same run.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class ChaseBench {
    static final int SLOTS = 512, STEPS = 1 << 14;

    @Param({"1024", "65536"})
    public int nodes;

    @Param({"4k", "thp"})
    public String backing;

    private LayoutGuest guest;
    private GuestMemory mem;
    private long p;

    @Setup
    public void setup() {
        guest = new LayoutGuest(SLOTS, backing);
        mem = guest.memory();
        long[] g = gpas(nodes);
        for (int i = 0; i < nodes; i++) mem.writeU64(g[i], g[(i + 1) % nodes]);
        p = g[0];
        long q = p; // the chain must come back to its start after exactly n steps
        for (int i = 0; i < nodes; i++) q = mem.readU64(q);
        if (q != g[0]) throw new IllegalStateException("the chase chain does not close after " + nodes + " nodes");
    }

    static long[] gpas(int n) {
        long[] g = new long[n];
        Set<Long> seen = new HashSet<>();
        long x = 0x9E3779B97F4A7C15L;
        for (int i = 0; i < n; ) {
            x = Virtq.xorshift(x);
            long a = Long.remainderUnsigned(x, SLOTS) * Layout.STRIDE + (Long.remainderUnsigned(x >>> 20, Layout.SLOT - 4096) & ~63L);
            if (seen.add(a)) g[i++] = a;
        }
        return g;
    }

    @TearDown
    public void tearDown() {
        guest.close();
    }

    @Benchmark
    @OperationsPerInvocation(STEPS)
    public long chase() {
        final GuestMemory m = mem;
        long q = p;
        for (int i = 0; i < STEPS; i++) q = m.readU64(q);
        p = q;
        return q;
    }
}
