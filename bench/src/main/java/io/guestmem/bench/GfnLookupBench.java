package io.guestmem.bench;

import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * {@link MemslotSet#gfnToHva} over {@code slots} 2 MiB slots with 1 MiB gaps (issue 7), the set built
 * by {@link Memslots} as a VMM would. {@code random} uses the reference xorshift sequence (compare with
 * vm-memory's {@code get_host_address}); {@code sequential} walks pages in order, where the last-used
 * slot cache hits. The hvas are never dereferenced, so they need no backing memory.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class GfnLookupBench {
    @Param({"1", "8", "64", "512"})
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
        int i = next;
        next = (i + 1) & Layout.MASK;
        return set.gfnToHva(gfns[i]);
    }
}
