package io.guestmem.bench;

import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * {@link MemslotSet#gfnToHva} over {@code slots} 2 MiB slots with 1 MiB gaps, the set built
 * by {@link Memslots} one change at a time as a VMM would; up to KVM's 32764 (target: random lookups at
 * 32764 slots within 1.5x of 512). {@code random} uses the reference xorshift sequence (compare with
 * vm-memory's {@code get_host_address}); {@code sequential} walks pages in order, where the last-used
 * slot cache hits. The hvas are never dereferenced, so they need no backing memory.
 *
 * <p>Three shapes: {@code gfnToHva} is one lookup per JMH invocation (the harness's own index step and
 * call in every op); {@code gfnToHvaLoop} is a loop over the whole sequence summing the hvas, the shape of
 * vm-memory's loop in {@code bench/reference/vm-memory}, so their ratio compares like with like;
 * {@code indexFloor} is {@code gfnToHva}'s harness with no lookup (it returns the gfn), the floor under
 * {@code gfnToHva}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class GfnLookupBench {
    @Param({"1", "8", "64", "512", "4096", "32764"})
    public int slots;

    @Param({"random", "sequential"})
    public String pattern;

    private MemslotSet set;
    private long[] gfns;
    private int next;

    @Setup
    public void setup() {
        PageGeometry g = PageGeometry.host();
        Memslots memslots = new Memslots(Memslots.Config.of(g));
        long hvaBase = 0x7f00_0000_0000L;
        for (int i = 0; i < slots; i++) {
            memslots.setMemslot(0, i, 0, Layout.slotGpa(i), Layout.SLOT, hvaBase + i * Layout.STRIDE);
        }
        set = memslots.current(0);
        long[] gpas = switch (pattern) {
            case "random" -> Layout.randomGpas(slots);
            case "sequential" -> Layout.sequentialGpas(slots, g.pageSize());
            default -> throw new IllegalArgumentException("pattern " + pattern);
        };
        gfns = new long[gpas.length];
        for (int i = 0; i < gpas.length; i++) gfns[i] = gpas[i] >>> g.shift();
        for (long gfn : gfns) {
            if (MemslotSet.isErrorHva(set.gfnToHva(gfn))) throw new IllegalStateException("gfn " + gfn + " not in a slot");
        }
    }

    @Benchmark
    public long gfnToHva() {
        return set.gfnToHva(gfns[step()]);
    }

    /** ns per lookup over the whole sequence, no harness between two lookups. */
    @Benchmark
    @OperationsPerInvocation(Layout.N)
    public long gfnToHvaLoop() {
        final MemslotSet s = set;
        final long[] g = gfns;
        long acc = 0;
        for (int k = 0; k < g.length; k++) acc += s.gfnToHva(g[k]);
        return acc;
    }

    @Benchmark
    public long indexFloor() {
        return gfns[step()];
    }

    private int step() {
        int i = next;
        next = (i + 1) & Layout.MASK;
        return i;
    }
}
