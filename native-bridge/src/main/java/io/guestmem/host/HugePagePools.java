package io.guestmem.host;

import io.guestmem.sys.Posix;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.stream.Stream;

/**
 * The kernel's hugetlb pools ({@code /sys/kernel/mm/hugepages}): which sizes exist, how many pages each
 * holds, and raising a pool for a while. Raising adds to what is there (another user's pages stay) and
 * the returned {@link Reservation} takes back exactly what it added.
 */
public final class HugePagePools {
    private HugePagePools() {}

    static final Path ROOT = Path.of("/sys/kernel/mm/hugepages");
    private static final Path THP_PMD = Path.of("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
    /** Serialises this JVM's read-modify-write of nr_hugepages. */
    private static final Object LOCK = new Object();

    /** One pool's counters. {@code available()} is what a new mapping can still reserve. */
    public record Pool(HugePageSize size, long total, long free, long reserved, long surplus) {
        public long available() {
            return free - reserved;
        }
    }

    /** The sizes the kernel offers, smallest first (empty without hugetlbfs support). */
    public static List<HugePageSize> sizes() {
        if (!Files.isDirectory(ROOT)) return List.of();
        try (Stream<Path> s = Files.list(ROOT)) {
            return s.map(p -> p.getFileName().toString())
                    .filter(n -> n.startsWith("hugepages-") && n.endsWith("kB"))
                    .map(n -> new HugePageSize(Long.parseLong(n.substring(10, n.length() - 2)) << 10))
                    .sorted().toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The offered size of {@code bytes}, or IllegalArgumentException naming the sizes that exist. */
    public static HugePageSize size(long bytes) {
        for (HugePageSize s : sizes()) if (s.bytes() == bytes) return s;
        throw new IllegalArgumentException("no hugetlb pool of " + bytes + " bytes; this kernel offers " + sizes());
    }

    public static Pool pool(HugePageSize size) {
        Path d = size.sysfsDir();
        return new Pool(size, read(d.resolve("nr_hugepages")), read(d.resolve("free_hugepages")),
                read(d.resolve("resv_hugepages")), read(d.resolve("surplus_hugepages")));
    }

    /**
     * The PMD size THPs come in ({@code hpage_pmd_size}), or the base page size when the kernel has no
     * THP: the alignment a THP-advised region needs so that whole PMDs fit in it.
     */
    public static long thpSize() {
        try {
            return Files.exists(THP_PMD) ? Long.parseLong(Files.readString(THP_PMD).trim()) : Posix.PAGE_SIZE;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The shell line that reserves {@code pages} more pages of {@code size}, for error messages. */
    static String howToReserve(HugePageSize size, long pages) {
        long target = pool(size).total() + pages;
        return "echo " + target + " > " + size.sysfsDir().resolve("nr_hugepages");
    }

    /** Pages added to a pool by {@link #raise}; {@link #close()} removes exactly those, once. */
    public static final class Reservation implements AutoCloseable {
        private final HugePageSize size;
        private final long added;
        private final AtomicBoolean closed = new AtomicBoolean();

        private Reservation(HugePageSize size, long added) {
            this.size = size;
            this.added = added;
        }

        public HugePageSize size() {
            return size;
        }

        public long added() {
            return added;
        }

        @Override
        public void close() {
            if (closed.compareAndSet(false, true)) adjust(size, -added);
        }
    }

    /**
     * Adds {@code pages} pages to the pool of {@code size} (root only). Fails, leaving the pool as it
     * was, when the kernel cannot find that many free huge pages (memory too fragmented, too little).
     */
    public static Reservation raise(HugePageSize size, long pages) {
        if (pages <= 0) throw new IllegalArgumentException("pages to add must be positive: " + pages);
        long got = adjust(size, pages);
        if (got < pages) {
            adjust(size, -got);
            throw new IllegalStateException("the kernel could add only " + got + " of " + pages + " " + size
                    + " huge pages to " + size.sysfsDir().resolve("nr_hugepages") + " (not enough free contiguous memory)");
        }
        return new Reservation(size, pages);
    }

    /** nr_hugepages += delta (not below 0); returns how much it really changed. */
    private static long adjust(HugePageSize size, long delta) {
        Path nr = size.sysfsDir().resolve("nr_hugepages");
        synchronized (LOCK) {
            long before = read(nr);
            long target = Math.max(0, before + delta);
            try {
                Files.writeString(nr, Long.toString(target));
            } catch (IOException e) {
                throw new IllegalStateException("cannot write " + nr + " (root needed): " + e, e);
            }
            return read(nr) - before;
        }
    }

    private static long read(Path p) {
        try {
            return Long.parseLong(Files.readString(p).trim());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
