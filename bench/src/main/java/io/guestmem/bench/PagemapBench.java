package io.guestmem.bench;

import io.guestmem.host.HostRegion;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapScan;
import io.guestmem.sys.Posix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * The kernel's page-table walk as user space can ask for it, in ns per page of a 1 GiB prefaulted
 * region on 4K pages and on THP: {@link Pagemap#read} of the whole region (one pread per 131072 entries),
 * one 8-byte pread per page (what a naive per-page lookup costs), and {@code PAGEMAP_SCAN} (regions
 * coalesced by the kernel). All three write into buffers allocated once.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class PagemapBench {
    static final long SIZE = Regions.GIB;
    static final int PAGES = (int) (SIZE / 4096);
    /** Pages per invocation of the per-page bench (a whole GiB would take a quarter second per call). */
    static final int WINDOW = 4096;

    @Param({"4k", "thp"})
    public String backing;

    private HostRegion region;
    private Pagemap pagemap;
    private PagemapScan scan;
    private Arena arena;
    private MemorySegment all, one;
    private long pageSize;
    private long cursor;

    @Setup
    public void setup() {
        pageSize = Posix.PAGE_SIZE;
        if (pageSize != 4096) throw new IllegalStateException("the per-page counts assume 4 KiB pages");
        region = Regions.populated(backing, SIZE);
        pagemap = Pagemap.openSelf();
        scan = PagemapScan.open(pagemap);
        arena = Arena.ofConfined();
        all = arena.allocate((long) PAGES * 8, 8);
        one = arena.allocate(8, 8);
    }

    @TearDown
    public void tearDown() {
        scan.close();
        pagemap.close();
        arena.close();
        region.close();
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public long batchPread() {
        pagemap.read(region.address(), PAGES, all);
        return all.getAtIndex(java.lang.foreign.ValueLayout.JAVA_LONG, PAGES - 1);
    }

    @Benchmark
    @OperationsPerInvocation(WINDOW)
    public long perPagePread() {
        long base = region.address(), c = cursor, acc = 0;
        for (int i = 0; i < WINDOW; i++) {
            pagemap.read(base + ((c + i) % PAGES) * pageSize, 1, one);
            acc += one.get(java.lang.foreign.ValueLayout.JAVA_LONG, 0);
        }
        cursor = (c + WINDOW) % PAGES;
        return acc;
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public long pagemapScan() {
        long start = region.address(), end = start + SIZE, acc = 0;
        while (start < end) {
            int n = scan.scan(start, end, PagemapScan.PRESENT | PagemapScan.HUGE);
            acc += n;
            long stop = scan.walkEnd();
            if (stop <= start) throw new IllegalStateException("PAGEMAP_SCAN made no progress at " + start);
            start = stop;
        }
        return acc;
    }
}
