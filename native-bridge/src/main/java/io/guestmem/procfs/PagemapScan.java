package io.guestmem.procfs;

import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import io.guestmem.sys.UseAfterClose;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * The {@code PAGEMAP_SCAN} ioctl on a pagemap fd (Linux 6.7): the page categories of a range, coalesced into
 * regions, in one call, and optionally write-protecting what it matched ({@link #WP_MATCHING}, the
 * userfaultfd async-WP dirty tracker).
 *
 * <p>The argument struct and the region vector are allocated once per instance and reused, so
 * {@link #scan} allocates nothing; read its answer with {@link #regionStart}, {@link #regionEnd},
 * {@link #regionCategories} and {@link #walkEnd}. An instance is for one thread at a time.
 *
 * <p>Where the kernel lacks the ioctl (ENOTTY/EINVAL on the probe) the same question is answered from
 * pagemap reads, smaps (VM_PFNMAP ranges are skipped, as the kernel does) and,
 * for {@link #PFNZERO} and {@link #HUGE}, kpageflags of visible pfns. The fallback cannot express
 * {@link #WPALLOWED}, {@link #WRITTEN} or the write-protecting flags and throws
 * {@link UnsupportedOperationException} when asked for them. Its HUGE means "the page belongs to a hugetlb
 * or THP folio", which also covers a PTE-mapped THP that the ioctl (PMD-mapped only) would not call huge.
 */
public final class PagemapScan implements AutoCloseable {
    /** {@code _IOWR('f', 16, struct pm_scan_arg)}. */
    public static final long PAGEMAP_SCAN = 0xC0606610L;
    /** {@code sizeof(struct pm_scan_arg)} and {@code sizeof(struct page_region)}. */
    public static final int ARG_SIZE = 96, REGION_SIZE = 24;

    // Categories (PAGE_IS_*).
    public static final long WPALLOWED = 1, WRITTEN = 1 << 1, FILE = 1 << 2, PRESENT = 1 << 3, SWAPPED = 1 << 4,
            PFNZERO = 1 << 5, HUGE = 1 << 6, SOFT_DIRTY = 1 << 7, GUARD = 1 << 8;
    /** Every category up to GUARD (GUARD needs 6.15; older kernels reject it with EINVAL). */
    public static final long ALL_CATEGORIES = (1 << 9) - 1;
    /** The categories the pagemap fallback can answer. */
    public static final long FALLBACK_CATEGORIES = FILE | PRESENT | SWAPPED | PFNZERO | HUGE | SOFT_DIRTY | GUARD;

    // Flags (PM_SCAN_*).
    public static final long WP_MATCHING = 1, CHECK_WPASYNC = 2;

    // struct pm_scan_arg field offsets.
    private static final long SIZE = 0, FLAGS = 8, START = 16, END = 24, WALK_END = 32, VEC = 40, VEC_LEN = 48,
            MAX_PAGES = 56, INVERTED = 64, MASK = 72, ANYOF = 80, RETURN_MASK = 88;

    /** One region of pages that share the reported categories. */
    public record Region(long start, long end, long categories) {
        public long pages() {
            return (end - start) / Posix.PAGE_SIZE;
        }

        public boolean is(long category) {
            return (categories & category) == category;
        }

        @Override
        public String toString() {
            return Fmt.hex(start) + "-" + Fmt.hex(end) + " " + names(categories);
        }
    }

    private final Pagemap pagemap;
    private final KPageFlags kpageflags; // fallback only, may be null
    private final boolean ownsKpageflags;
    private final boolean ioctl;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment arg;
    private final MemorySegment vec;
    private final int capacity;
    private int count;
    private long walkEnd;
    private final long[] fallbackStart, fallbackEnd, fallbackCats;

    private PagemapScan(Pagemap pagemap, int capacity, boolean forceFallback, KPageFlags kpf) {
        if (capacity <= 0) throw new IllegalArgumentException("region capacity must be positive, got " + capacity);
        this.pagemap = pagemap;
        this.capacity = capacity;
        this.arg = arena.allocate(ARG_SIZE, 8);
        this.vec = arena.allocate((long) REGION_SIZE * capacity, 8);
        boolean supported = !forceFallback && probe();
        this.ioctl = supported;
        if (supported) {
            kpageflags = null;
            ownsKpageflags = false;
            fallbackStart = fallbackEnd = fallbackCats = null;
        } else {
            KPageFlags k = kpf;
            boolean owns = false;
            if (k == null && pagemap.pfnVisible()) {
                try {
                    k = KPageFlags.open();
                    owns = true;
                } catch (SyscallException e) {
                    k = null; // PFNZERO / HUGE then unanswerable; said when asked
                }
            }
            kpageflags = k;
            ownsKpageflags = owns;
            fallbackStart = new long[capacity];
            fallbackEnd = new long[capacity];
            fallbackCats = new long[capacity];
        }
    }

    /** A scanner over {@code pagemap} returning up to {@code capacity} regions per call (ioctl when available). */
    public static PagemapScan open(Pagemap pagemap, int capacity) {
        return new PagemapScan(pagemap, capacity, false, null);
    }

    /** {@link #open(Pagemap, int)} with room for 1024 regions per call. */
    public static PagemapScan open(Pagemap pagemap) {
        return open(pagemap, 1024);
    }

    /**
     * The pagemap-read fallback even where the ioctl exists (to check one against the other).
     * {@code kpageflags} may be null: one is opened when pfns are visible.
     */
    public static PagemapScan fallback(Pagemap pagemap, KPageFlags kpageflags, int capacity) {
        return new PagemapScan(pagemap, capacity, true, kpageflags);
    }

    /** True when answers come from the ioctl, false when from the pagemap fallback. */
    public boolean usesIoctl() {
        return ioctl;
    }

    private boolean probe() {
        // An empty range: a kernel with the ioctl answers 0 regions.
        fill(0, 0, 0, 0, 0, 0, PRESENT, 0);
        int r = Posix.ioctlRaw(pagemap.fd("ioctl(PAGEMAP_SCAN)"), PAGEMAP_SCAN, arg);
        if (r >= 0) return true;
        if (r == -Errno.ENOTTY.number || r == -Errno.EINVAL.number || r == -Errno.EOPNOTSUPP.number) return false;
        throw new SyscallException(-r, "ioctl(" + pagemap.path + ", PAGEMAP_SCAN probe)");
    }

    private void fill(long start, long end, long flags, long inverted, long mask, long anyof, long returnMask, long maxPages) {
        arg.set(ProcFile.U64, SIZE, ARG_SIZE);
        arg.set(ProcFile.U64, FLAGS, flags);
        arg.set(ProcFile.U64, START, start);
        arg.set(ProcFile.U64, END, end);
        arg.set(ProcFile.U64, WALK_END, 0);
        arg.set(ProcFile.U64, VEC, vec.address());
        arg.set(ProcFile.U64, VEC_LEN, capacity);
        arg.set(ProcFile.U64, MAX_PAGES, maxPages);
        arg.set(ProcFile.U64, INVERTED, inverted);
        arg.set(ProcFile.U64, MASK, mask);
        arg.set(ProcFile.U64, ANYOF, anyof);
        arg.set(ProcFile.U64, RETURN_MASK, returnMask);
    }

    /**
     * One scan of {@code [start, end)}: the kernel's {@code PAGEMAP_SCAN} with these fields of
     * {@code struct pm_scan_arg}. A page is reported when {@code ((cats ^ inverted) & mask) == mask} and,
     * if {@code anyof != 0}, {@code (cats ^ inverted) & anyof != 0}; regions carry {@code cats & returnMask}.
     * Returns the number of regions (at most the capacity); {@link #walkEnd()} says where the walk stopped
     * (before {@code end} when the vector filled up or {@code maxPages} was reached: call again from there).
     * Allocates nothing on the ioctl path.
     */
    public int scan(long start, long end, long flags, long inverted, long mask, long anyof, long returnMask,
                    long maxPages) {
        if (!arena.scope().isAlive()) throw UseAfterClose.of("PagemapScan", "scan()");
        if ((start & (Posix.PAGE_SIZE - 1)) != 0)
            throw new IllegalArgumentException("scan start " + Fmt.hex(start) + " is not page aligned");
        if (Long.compareUnsigned(end, start) < 0)
            throw new IllegalArgumentException("scan end " + Fmt.hex(end) + " is below start " + Fmt.hex(start));
        if (((inverted | mask | anyof | returnMask) & ~ALL_CATEGORIES) != 0)
            throw new IllegalArgumentException("unknown categories " + Fmt.hex((inverted | mask | anyof | returnMask) & ~ALL_CATEGORIES));
        if ((flags & ~(WP_MATCHING | CHECK_WPASYNC)) != 0)
            throw new IllegalArgumentException("unknown PAGEMAP_SCAN flags " + Fmt.hex(flags));
        if (!ioctl) return fallbackScan(start, (end + Posix.PAGE_SIZE - 1) & -Posix.PAGE_SIZE, flags, inverted, mask, anyof, returnMask, maxPages);
        fill(start, end, flags, inverted, mask, anyof, returnMask, maxPages);
        int r = Posix.ioctlRaw(pagemap.fd("ioctl(PAGEMAP_SCAN)"), PAGEMAP_SCAN, arg);
        if (r < 0)
            throw new SyscallException(-r, "ioctl(" + pagemap.path + ", PAGEMAP_SCAN, " + Fmt.hex(start) + "-"
                    + Fmt.hex(end) + ", flags=" + flags + ", mask=" + Fmt.hex(mask) + ", return=" + Fmt.hex(returnMask) + ")");
        count = r;
        walkEnd = arg.get(ProcFile.U64, WALK_END);
        return r;
    }

    /** Scan for the categories in {@code returnMask} of every page of {@code [start, end)} (no filtering). */
    public int scan(long start, long end, long returnMask) {
        return scan(start, end, 0, 0, 0, 0, returnMask, 0);
    }

    /** Where the last scan stopped; equal to its end when it covered the whole range. */
    public long walkEnd() {
        return walkEnd;
    }

    /** The number of regions of the last scan. */
    public int count() {
        return count;
    }

    public long regionStart(int i) {
        checkIndex(i);
        return ioctl ? vec.get(ProcFile.U64, (long) i * REGION_SIZE) : fallbackStart[i];
    }

    public long regionEnd(int i) {
        checkIndex(i);
        return ioctl ? vec.get(ProcFile.U64, (long) i * REGION_SIZE + 8) : fallbackEnd[i];
    }

    public long regionCategories(int i) {
        checkIndex(i);
        return ioctl ? vec.get(ProcFile.U64, (long) i * REGION_SIZE + 16) : fallbackCats[i];
    }

    private void checkIndex(int i) {
        if (i < 0 || i >= count) throw new IndexOutOfBoundsException("region " + i + " of " + count);
    }

    /** Every region of {@code [start, end)} with the categories in {@code returnMask}, calling again until done. */
    public List<Region> scanAll(long start, long end, long returnMask) {
        return scanAll(start, end, 0, 0, 0, 0, returnMask);
    }

    /** As {@link #scan} repeated from {@link #walkEnd()} until the whole range is walked; regions as records. */
    public List<Region> scanAll(long start, long end, long flags, long inverted, long mask, long anyof,
                                long returnMask) {
        List<Region> out = new ArrayList<>();
        long from = start;
        while (Long.compareUnsigned(from, end) < 0) {
            int n = scan(from, end, flags, inverted, mask, anyof, returnMask, 0);
            for (int i = 0; i < n; i++) {
                Region r = new Region(regionStart(i), regionEnd(i), regionCategories(i));
                // A walk resumed mid-region continues it: join so callers see the kernel's coalescing.
                Region last = out.isEmpty() ? null : out.get(out.size() - 1);
                if (last != null && last.end() == r.start() && last.categories() == r.categories())
                    out.set(out.size() - 1, new Region(last.start(), r.end(), r.categories()));
                else out.add(r);
            }
            long next = walkEnd;
            if (Long.compareUnsigned(next, from) <= 0) throw new ProcfsException("PAGEMAP_SCAN made no progress at " + Fmt.hex(from));
            from = next;
        }
        return out;
    }

    /** The category names of a mask, e.g. {@code [PRESENT, HUGE]}. */
    public static String names(long categories) {
        String[] n = {"WPALLOWED", "WRITTEN", "FILE", "PRESENT", "SWAPPED", "PFNZERO", "HUGE", "SOFT_DIRTY", "GUARD"};
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < n.length; i++)
            if ((categories & (1L << i)) != 0) b.append(b.length() > 1 ? ", " : "").append(n[i]);
        return b.append(']').toString();
    }

    // ---- fallback: the same answer from pagemap (+ smaps, kpageflags) ----

    private int fallbackScan(long start, long end, long flags, long inverted, long mask, long anyof,
                             long returnMask, long maxPages) {
        if ((flags & (WP_MATCHING | CHECK_WPASYNC)) != 0)
            throw new UnsupportedOperationException("PAGEMAP_SCAN is not available: write-protecting scans "
                    + "(WP_MATCHING / CHECK_WPASYNC) cannot be emulated with pagemap reads");
        long used = inverted | mask | anyof | returnMask;
        if ((used & ~FALLBACK_CATEGORIES) != 0)
            throw new UnsupportedOperationException("PAGEMAP_SCAN is not available and pagemap cannot express "
                    + names(used & ~FALLBACK_CATEGORIES));
        boolean needKpf = (used & (PFNZERO | HUGE)) != 0;
        if (needKpf && kpageflags == null)
            throw new UnsupportedOperationException("PAGEMAP_SCAN is not available and " + names(used & (PFNZERO | HUGE))
                    + " needs visible pfns and /proc/kpageflags");
        count = 0;
        walkEnd = end;
        long pageSize = Posix.PAGE_SIZE;
        long pagesLeft = maxPages == 0 ? Long.MAX_VALUE : maxPages;
        int pid = pagemap.pid() == Posix.getpid() ? 0 : pagemap.pid();
        long[] raw = new long[(int) Math.min(ProcFile.MAX_CHUNK_ENTRIES, 1 << 14)];
        long[] pfns = new long[raw.length];
        long[] kflags = new long[raw.length];
        for (Vma vma : Smaps.overlapping(pid, start, end)) {
            if (vma.pfnMap()) continue; // the kernel's walk skips VM_PFNMAP
            // FILE comes from the page, as the ioctl reports it: measured on 6.18, neither an empty PTE nor
            // an untouched range of a shared (file-backed) VMA is FILE, so the VMA's file does not count.
            long vmaCategory = 0;
            long from = Math.max(vma.start(), start), to = Math.min(vma.end(), end);
            for (long chunk = from; chunk < to; ) {
                int n = (int) Math.min(raw.length, (to - chunk) / pageSize);
                pagemap.read(chunk, raw, 0, n);
                if (needKpf) {
                    int k = 0;
                    for (int i = 0; i < n; i++) {
                        long p = pagemap.pfnOf(raw[i]);
                        if (p >= 0) pfns[k++] = p;
                    }
                    if (k > 0) kpageflags.read(java.util.Arrays.copyOf(pfns, k), kflags);
                }
                int k = 0;
                for (int i = 0; i < n; i++) {
                    long e = raw[i];
                    long cats = vmaCategory;
                    long kf = 0;
                    if (needKpf && pagemap.pfnOf(e) >= 0) kf = kflags[k++];
                    if (PagemapEntry.isPresent(e)) {
                        cats |= PRESENT;
                        boolean zero = KPageFlag.ZERO_PAGE.in(kf);
                        if (zero) cats |= PFNZERO;
                        else if (PagemapEntry.isFileOrShared(e)) cats |= FILE;
                        if (KPageFlag.HUGE.in(kf) || KPageFlag.THP.in(kf)) cats |= HUGE;
                    } else if (PagemapEntry.isSwapped(e)) {
                        cats |= SWAPPED;
                    }
                    if (PagemapEntry.isSoftDirty(e)) cats |= SOFT_DIRTY;
                    if (PagemapEntry.isGuard(e)) cats |= GUARD;
                    long c = cats ^ inverted;
                    long addr = chunk + i * pageSize;
                    if ((c & mask) != mask || (anyof != 0 && (c & anyof) == 0)) continue;
                    if (!emit(addr, addr + pageSize, cats & returnMask)) {
                        walkEnd = addr;
                        return count;
                    }
                    if (--pagesLeft == 0) {
                        walkEnd = addr + pageSize;
                        return count;
                    }
                }
                chunk += n * pageSize;
            }
        }
        return count;
    }

    private boolean emit(long start, long end, long cats) {
        if (count > 0 && fallbackEnd[count - 1] == start && fallbackCats[count - 1] == cats) {
            fallbackEnd[count - 1] = end;
            return true;
        }
        if (count == capacity) return false;
        fallbackStart[count] = start;
        fallbackEnd[count] = end;
        fallbackCats[count] = cats;
        count++;
        return true;
    }

    /** Frees the buffers (and a kpageflags reader this scanner opened); the pagemap stays open. */
    @Override
    public void close() {
        if (!arena.scope().isAlive()) return;
        arena.close();
        if (ownsKpageflags) kpageflags.close();
    }
}
