package io.guestmem.host;

import io.guestmem.sys.Posix;
import java.nio.file.Path;

/**
 * A hugetlb page size the kernel offers, as found in {@code /sys/kernel/mm/hugepages/hugepages-<N>kB}.
 * Obtain instances from {@link HugePagePools#sizes()} or {@link HugePagePools#size(long)}, which check
 * that the kernel has a pool of that size.
 */
public record HugePageSize(long bytes) implements Comparable<HugePageSize> {
    public HugePageSize {
        if (bytes <= Posix.PAGE_SIZE || Long.bitCount(bytes) != 1)
            throw new IllegalArgumentException("not a huge page size: " + bytes);
    }

    /** {@code 2M}, {@code 1G}, {@code 64K}. */
    public String label() {
        if (bytes >= 1L << 30) return (bytes >> 30) + "G";
        if (bytes >= 1L << 20) return (bytes >> 20) + "M";
        return (bytes >> 10) + "K";
    }

    /** The sysfs directory of this size's pool. */
    public Path sysfsDir() {
        return HugePagePools.ROOT.resolve("hugepages-" + (bytes >> 10) + "kB");
    }

    @Override
    public int compareTo(HugePageSize o) {
        return Long.compare(bytes, o.bytes);
    }

    @Override
    public String toString() {
        return label();
    }
}
