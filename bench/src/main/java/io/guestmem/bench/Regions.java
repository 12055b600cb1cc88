package io.guestmem.bench;

import io.guestmem.host.HostRegion;
import io.guestmem.host.Prefault;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapScan;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import java.util.List;

/**
 * Host memory for the benches, in the two kinds the tables compare: {@code 4k} (private anonymous,
 * MADV_NOHUGEPAGE so that a THP=always host does not change the meaning) and {@code thp} (PMD aligned,
 * MADV_HUGEPAGE, guestmem's default for RAM).
 */
final class Regions {
    static final long GIB = 1L << 30;

    private Regions() {}

    /** An unpopulated region of {@code backing} ("4k" or "thp"). */
    static HostRegion map(String backing, long size) {
        return switch (backing) {
            case "4k" -> {
                HostRegion r = HostRegion.anonymous(size).create();
                Mman.madvise(r.address(), r.size(), Mman.MADV_NOHUGEPAGE);
                yield r;
            }
            case "thp" -> HostRegion.thp(size).create();
            default -> throw new IllegalArgumentException("backing must be 4k or thp, got " + backing);
        };
    }

    /** A region of {@code backing} with every page written (allocated), on all cores; prints its THP coverage. */
    static HostRegion populated(String backing, long size) {
        HostRegion r = populatedQuiet(backing, size);
        report(backing, List.of(r));
        return r;
    }

    /** {@link #populated} without the report (for many small regions: report them together). */
    static HostRegion populatedQuiet(String backing, long size) {
        HostRegion r = map(backing, size);
        try {
            Prefault.populate(r.address(), r.size(), r.pageSize(), Prefault.Mode.WRITE, Prefault.threadsFor(size));
        } catch (RuntimeException e) {
            r.close();
            throw e;
        }
        return r;
    }

    /**
     * Prints (to the fork's output, which JMH shows) how much of the regions the kernel really maps with
     * PMDs, as PAGEMAP_SCAN reports it: a THP row whose regions got no huge pages measures 4K pages.
     */
    static void report(String backing, List<HostRegion> regions) {
        long huge = 0, total = 0;
        try (Pagemap pm = Pagemap.openSelf(); PagemapScan scan = PagemapScan.open(pm)) {
            for (HostRegion r : regions) {
                total += r.size();
                for (PagemapScan.Region reg : scan.scanAll(r.address(), r.address() + r.size(), PagemapScan.HUGE)) {
                    if (reg.is(PagemapScan.HUGE)) huge += reg.pages() * Posix.PAGE_SIZE;
                }
            }
        }
        System.out.printf("[guestmem-bench] %s: %d region(s), %d MiB, %.1f%% PMD-mapped (PAGEMAP_SCAN HUGE)%n",
                backing, regions.size(), total >> 20, 100.0 * huge / Math.max(1, total));
    }
}
