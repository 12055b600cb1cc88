package io.guestmem.bench;

import io.guestmem.host.HostRegion;
import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Pagemap;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * Classifying a batch of real pfns from {@code /proc/kpageflags} (ns per page): {@link KPageFlags#read(long[],
 * long[])} (sorted, one pread per run of contiguous pfns) followed by the per-page decision a pfn
 * classifier makes (huge/THP, anonymous, zero page, locked, other). The pfns are those of 4096
 * consecutive pages of a prefaulted region, read from pagemap once in setup: on THP they form few long
 * runs, on 4K pages many short ones.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class ClassifyBench {
    static final int BATCH = 4096;
    static final long SIZE = 64L << 20;

    @Param({"4k", "thp"})
    public String backing;

    private HostRegion region;
    private KPageFlags kpageflags;
    private long[] pfns, flags;
    private final int[] classes = new int[5];

    private static final long HUGE = KPageFlag.maskOf(KPageFlag.HUGE, KPageFlag.THP);
    private static final long ANON = KPageFlag.ANON.mask, ZERO = KPageFlag.ZERO_PAGE.mask;
    private static final long LOCKED = KPageFlag.MLOCKED.mask | KPageFlag.UNEVICTABLE.mask;

    @Setup
    public void setup() {
        region = Regions.populated(backing, SIZE);
        try (Pagemap pm = Pagemap.openSelf()) {
            if (!pm.pfnVisible()) throw new IllegalStateException("pagemap hides pfns: ClassifyBench needs CAP_SYS_ADMIN");
            long[] raw = new long[BATCH];
            pm.read(region.address(), raw, 0, BATCH);
            pfns = new long[BATCH];
            for (int i = 0; i < BATCH; i++) {
                long pfn = pm.pfnOf(raw[i]);
                if (pfn < 0) throw new IllegalStateException("page " + i + " of the prefaulted region has no pfn");
                pfns[i] = pfn;
            }
        }
        kpageflags = KPageFlags.open();
        flags = new long[BATCH];
    }

    @TearDown
    public void tearDown() {
        kpageflags.close();
        region.close();
    }

    @Benchmark
    @OperationsPerInvocation(BATCH)
    public int[] classifyBatch() {
        kpageflags.read(pfns, flags);
        int[] c = classes;
        java.util.Arrays.fill(c, 0);
        for (long f : flags) {
            int k = (f & HUGE) != 0 ? 0 : (f & ZERO) != 0 ? 1 : (f & LOCKED) != 0 ? 2 : (f & ANON) != 0 ? 3 : 4;
            c[k]++;
        }
        return c;
    }
}
