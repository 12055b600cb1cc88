package io.guestmem.bench;

import io.guestmem.host.HostRegion;
import io.guestmem.host.Prefault;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * {@link Prefault#populate} (MADV_POPULATE_WRITE) of a fresh 1 GiB region: seconds per GiB, one thread vs
 * one per core, 4K pages vs THP. Each measurement maps a new region (not timed) so that every page is
 * really allocated and zeroed by the kernel inside the timed call, and unmaps it afterwards.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.SECONDS)
public class PrefaultBench {
    static final long SIZE = Regions.GIB;

    @Param({"4k", "thp"})
    public String backing;

    /** "1" or "all" (Runtime.availableProcessors()). */
    @Param({"1", "all"})
    public String threads;

    private HostRegion region;
    private int nThreads;

    @Setup(Level.Trial)
    public void trial() {
        nThreads = threads.equals("all") ? Runtime.getRuntime().availableProcessors() : Integer.parseInt(threads);
    }

    @Setup(Level.Invocation)
    public void map() {
        region = Regions.map(backing, SIZE);
    }

    @TearDown(Level.Invocation)
    public void unmap() {
        region.close();
    }

    @Benchmark
    public void populate1GiB() {
        Prefault.populate(region.address(), region.size(), region.pageSize(), Prefault.Mode.WRITE, nThreads);
    }
}
