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
 *
 * <h2>Nothing outlives the process</h2>
 * A pool raised by writing {@code nr_hugepages} is system state: if the process is killed before it
 * writes the old value back, the pages stay taken from the system until someone notices. So a raise
 * never leaves anything the kernel will not take back by itself when the process dies, at any instant:
 * <ul>
 * <li><b>Sizes the buddy allocator can serve</b> (order &le; {@code MAX_PAGE_ORDER}: 2M on x86-64 and
 * arm64 4K, 32M on arm64 16K) are raised as <i>surplus</i> pages: the raise adds to
 * {@code nr_overcommit_hugepages}, which allocates nothing; the kernel allocates surplus pages when a
 * mapping reserves them ({@code hugetlb_acct_memory} &rarr; {@code gather_surplus_pages}) and frees them
 * to the buddy allocator when the last mapping or file holding them goes ({@code free_huge_folio} frees
 * a page while the node has surplus; {@code return_unused_surplus_pages} drops unused reserves). A
 * SIGKILL at any point therefore gives the memory back with the process's mappings and files, with no
 * help from anyone. What remains is the overcommit limit itself, a shared system value: it is changed
 * only through the guardian below, which takes its delta back when the process dies.
 * <li><b>Gigantic sizes</b> (order &gt; {@code MAX_PAGE_ORDER}, such as x86's 1G) cannot be surplus:
 * {@code alloc_surplus_hugetlb_folio} returns nothing for {@code hstate_is_gigantic} hstates, and
 * {@code nr_overcommit_hugepages_store} refuses them where the kernel cannot allocate gigantic pages at
 * run time (kernels since "mm/hugetlb: allow overcommitting gigantic hugepages" lift this, the arm64
 * runner's 6.12 and most distribution kernels do not; one behaviour for all is the one that works on
 * all). They are raised through {@code nr_hugepages} as persistent pages, by the guardian, which lowers
 * it again when the process dies. Lowering it while a dead process's file still holds the page is
 * exact too: {@code set_max_huge_pages} turns the in-use page into a surplus page, freed when released.
 * </ul>
 * <p>The guardian ({@link PoolGuardian}) is a shell started once per JVM in its own session; the JVM
 * holds the write end of its stdin, which the kernel closes when the JVM dies, however. It is the only
 * writer of this JVM's changes and records each one after the kernel made it, so no instant exists at
 * which a change is made but not known to the process that undoes it; it undoes with deltas under a
 * {@code flock} that every guestmem process takes on the same inode, so two processes raising the same
 * pool at once never undo each other's raise. Why a process and not a shutdown hook: hooks do not run on
 * SIGKILL. Why not {@code PR_SET_PDEATHSIG} or a pidfd in a helper thread: they live in the dying
 * process. The clean-exit path is {@link Reservation#close()}: the same guardian subtracts exactly what
 * the raise added, and the guardian's ledger for that knob is back to 0.
 * The one death this does not cover is the guardian's own by a signal sent to it alone (it runs in its own
 * session, so a kill of the JVM's process group or session does not reach it): then its ledger is lost with it.
 * <p>Other process-wide state the library or the demo changes (rlimits, mlock, KVM VMs, memfds,
 * guest_memfds, mappings) belongs to the process and goes with it; snapshot files are published only whole
 * (an unnamed {@code O_TMPFILE} file linked into its name, freed by the kernel if the writer dies first). The
 * crash test ({@code CrashSafetyTest}) kills child JVMs in each setup path and checks the system against that.
 */
public final class HugePagePools {
    private HugePagePools() {}

    static final Path ROOT = Path.of("/sys/kernel/mm/hugepages");
    private static final Path THP_PMD = Path.of("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");

    /**
     * One pool's counters. {@code total} is {@code nr_hugepages} (persistent pages), {@code overcommit}
     * the limit on surplus pages. {@code available()} is what a new mapping can reserve from free pages,
     * {@link #obtainable()} what it can get counting the surplus pages the kernel may still allocate.
     */
    public record Pool(HugePageSize size, long total, long free, long reserved, long surplus, long overcommit) {
        public long available() {
            return free - reserved;
        }

        /** Free unreserved pages plus the surplus headroom (gigantic sizes have none: see the class note). */
        public long obtainable() {
            return available() + (size.gigantic() ? 0 : Math.max(0, overcommit - surplus));
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
                read(d.resolve("resv_hugepages")), read(d.resolve("surplus_hugepages")),
                read(d.resolve("nr_overcommit_hugepages")));
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

    /**
     * Pages added to a pool by {@link #raise}; {@link #close()} removes exactly those, once. Surplus
     * raises add to the overcommit limit; gigantic ones to the persistent pool ({@link #surplus()}).
     */
    public static final class Reservation implements AutoCloseable {
        private final HugePageSize size;
        private final long added;
        private final Path knob;
        private final AtomicBoolean closed = new AtomicBoolean();

        private Reservation(HugePageSize size, long added, Path knob) {
            this.size = size;
            this.added = added;
            this.knob = knob;
        }

        public HugePageSize size() {
            return size;
        }

        public long added() {
            return added;
        }

        /** True when the pages come as surplus pages the kernel frees with their last mapping. */
        public boolean surplus() {
            return knob.getFileName().toString().equals("nr_overcommit_hugepages");
        }

        /** The sysfs file this reservation raised. */
        public Path knob() {
            return knob;
        }

        @Override
        public void close() {
            if (closed.compareAndSet(false, true)) PoolGuardian.get().change(knob, -added);
        }
    }

    /**
     * Lets {@code pages} more pages of {@code size} be mapped (root only), in a way that cannot outlive
     * this process (see the class note): a non-gigantic size raises the overcommit limit (the pages are
     * allocated when a region reserves them and freed with it), a gigantic size raises
     * {@code nr_hugepages} now and fails, leaving the pool as it was, when the kernel cannot find that
     * many free contiguous pages.
     */
    public static Reservation raise(HugePageSize size, long pages) {
        if (pages <= 0) throw new IllegalArgumentException("pages to add must be positive: " + pages);
        Path knob = size.sysfsDir().resolve(size.gigantic() ? "nr_hugepages" : "nr_overcommit_hugepages");
        PoolGuardian g = PoolGuardian.get();
        long got = g.change(knob, pages);
        if (got < pages) {
            if (got > 0) g.change(knob, -got);
            throw new IllegalStateException("the kernel could add only " + got + " of " + pages + " " + size
                    + " huge pages to " + knob + " (not enough free contiguous memory)");
        }
        return new Reservation(size, pages, knob);
    }

    private static long read(Path p) {
        try {
            return Long.parseLong(Files.readString(p).trim());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
