package io.guestmem.bench;

import io.guestmem.host.HostRegion;
import io.guestmem.mmu.HostMappingLevel;
import io.guestmem.mmu.HostView;
import io.guestmem.mmu.LevelSizes;
import io.guestmem.mmu.MappingLevel;
import io.guestmem.mmu.SlotLocks;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * {@link HostMappingLevel#hostMappingLevel} (x86's {@code host_pfn_mapping_level} from userspace) of one hva
 * per op, walking the pages of a 64 MiB prefaulted region on THP (answer PMD) and on 4K pages (answer PAGE).
 * Every call asks the kernel (pagemap, PAGEMAP_SCAN, kpageflags on THP), so this is syscalls, not table
 * lookups.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class HostLevelBench {
    static final long SIZE = 64L << 20;

    @Param({"4k", "thp"})
    public String backing;

    private HostRegion region;
    private HostView view;
    private HostMappingLevel levels;
    private long page, offset;

    @Setup
    public void setup() {
        region = Regions.populated(backing, SIZE);
        view = HostView.openSelf();
        levels = new HostMappingLevel(view, LevelSizes.host(), SlotLocks.NONE);
        page = io.guestmem.sys.Posix.PAGE_SIZE;
        MappingLevel expect = backing.equals("thp") ? MappingLevel.PMD : MappingLevel.PAGE;
        MappingLevel got = levels.hostMappingLevel(region.address());
        // Reported, not thrown: a THP region the kernel did not back with huge pages is a fact to show.
        if (got != expect) System.out.println("[guestmem-bench] " + backing + " region maps at " + got + ", expected " + expect);
    }

    @TearDown
    public void tearDown() {
        view.close();
        region.close();
    }

    @Benchmark
    public MappingLevel hostMappingLevel() {
        long o = offset;
        offset = (o + page * 509) % SIZE; // a prime stride: a different page, and PMD, each time
        return levels.hostMappingLevel(region.address() + o);
    }
}
