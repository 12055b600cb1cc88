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

    /**
     * True when the buddy allocator cannot serve a page this size ({@code hstate_is_gigantic}: order
     * above {@code MAX_PAGE_ORDER}), so the kernel keeps no surplus pages of it. {@code MAX_PAGE_ORDER}
     * is read from {@code /proc/buddyinfo}, which has one column per order 0..MAX_PAGE_ORDER.
     */
    public boolean gigantic() {
        return Long.numberOfTrailingZeros(bytes / Posix.PAGE_SIZE) > MaxOrder.VALUE;
    }

    private static final class MaxOrder {
        static final int VALUE = read();

        private static int read() {
            try {
                for (String line : java.nio.file.Files.readAllLines(Path.of("/proc/buddyinfo"))) {
                    int zone = line.indexOf("zone");
                    if (zone < 0) continue;
                    String[] f = line.substring(zone + 4).trim().split("\\s+");
                    return f.length - 2; // the zone's name, then MAX_PAGE_ORDER + 1 counts
                }
            } catch (java.io.IOException | RuntimeException e) {
                // fall through
            }
            return 10; // the kernel's default MAX_PAGE_ORDER (include/linux/mmzone.h) where buddyinfo is absent
        }
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
