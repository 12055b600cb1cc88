package io.guestmem.cli;

import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.PagemapScan;
import io.guestmem.procfs.ProcfsException;
import io.guestmem.procfs.Smaps;
import io.guestmem.procfs.Vma;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;

/**
 * The kernel's view of one process's memory, as {@code inspect} reports it: smaps for the VMAs,
 * PAGEMAP_SCAN for per-VMA counts, pagemap and kpageflags for pages. Everything is batched: one
 * PAGEMAP_SCAN walk per VMA, and for page listings one pagemap pread plus one PAGEMAP_SCAN per chunk of
 * up to {@link #CHUNK_PAGES} pages, and kpageflags preads per cluster of nearby pfns, never a syscall per page.
 */
final class ProcessMemoryView implements AutoCloseable {
    /** Pages per pagemap read when listing pages: 64 Ki entries = 512 KiB, 256 MiB of address space. */
    static final int CHUNK_PAGES = 1 << 16;
    /** pfns closer than this share one kpageflags pread (reading a few unused entries beats a syscall). */
    static final int PFN_GAP = 64;
    /** The longest kpageflags read for one cluster of pfns. */
    static final int PFN_WINDOW = 1 << 14;

    private static final long SUMMARY_RETURN = PagemapScan.PRESENT | PagemapScan.SWAPPED | PagemapScan.HUGE
            | PagemapScan.PFNZERO;

    /** A VMA and the part of it the user asked about. */
    record Selected(Vma vma, long start, long end) {
        long pages() {
            return (end - start) / Posix.PAGE_SIZE;
        }

        /** Why pagemap has nothing true to say about this VMA's pages, or null when it does. */
        String noView() {
            if (vma.pfnMap()) return "VM_PFNMAP: the kernel's page walk skips it, pfns are not observable";
            return null;
        }
    }

    final int pid;
    private final int procPid; // 0 for self, as the smaps reader wants it
    private final Pagemap pagemap;
    private final PagemapScan scan;
    private KPageFlags kpageflags;
    private boolean kpageflagsTried;
    private String kpageflagsProblem;

    private ProcessMemoryView(int pid, int procPid, Pagemap pagemap, PagemapScan scan) {
        this.pid = pid;
        this.procPid = procPid;
        this.pagemap = pagemap;
        this.scan = scan;
    }

    /**
     * Opens the view of {@code pid}. A missing process is a {@link io.guestmem.procfs.NoSuchProcessException};
     * missing rights become one sentence naming what the kernel asks.
     */
    static ProcessMemoryView open(int pid) {
        boolean self = pid == Posix.getpid();
        Pagemap pm;
        try {
            pm = self ? Pagemap.openSelf() : Pagemap.open(pid);
        } catch (SyscallException e) {
            if (e.is(Errno.EACCES) || e.is(Errno.EPERM)) throw noRights(pid, e.errnoName() + " from " + e.call());
            throw e;
        }
        try {
            return new ProcessMemoryView(pid, self ? 0 : pid, pm, PagemapScan.open(pm, 4096));
        } catch (RuntimeException e) {
            pm.close();
            throw e;
        }
    }

    static ProcfsException noRights(int pid, String what) {
        return new ProcfsException("no permission to read the memory of pid " + pid + " (" + what + "): the kernel "
                + "asks PTRACE_MODE_READ on it (same uid and not made undumpable, or CAP_SYS_PTRACE)");
    }

    boolean pfnVisible() {
        return pagemap.pfnVisible();
    }

    /** The VMAs overlapping {@code range}, clipped to it. */
    List<Selected> vmas(AddressRange range) {
        List<Vma> all;
        try {
            all = Smaps.overlapping(procPid, range.start(), range.end());
        } catch (ProcfsException e) {
            if (String.valueOf(e.getMessage()).contains("permission denied")) throw noRights(pid, "smaps");
            throw e;
        }
        List<Selected> out = new ArrayList<>(all.size());
        for (Vma v : all) {
            long s = Long.compareUnsigned(v.start(), range.start()) > 0 ? v.start() : range.start();
            long e = Long.compareUnsigned(v.end(), range.end()) < 0 ? v.end() : range.end();
            if (Long.compareUnsigned(e, s) > 0) out.add(new Selected(v, s, e));
        }
        return out;
    }

    /** The VMA's row: smaps facts plus present/swapped/huge/zero counts from PAGEMAP_SCAN over the clipped range. */
    InspectReport.Vma summarize(Selected sel) {
        Vma v = sel.vma();
        String noView = sel.noView();
        Long present = null, swapped = null, huge = null, zero = null;
        if (noView == null) {
            long ret = SUMMARY_RETURN;
            List<PagemapScan.Region> regions;
            try {
                regions = scanRegions(sel.start(), sel.end(), ret);
            } catch (UnsupportedOperationException e) {
                // Pagemap fallback without kpageflags: huge and zero pages cannot be told.
                ret = PagemapScan.PRESENT | PagemapScan.SWAPPED;
                regions = scanRegions(sel.start(), sel.end(), ret);
            } catch (SyscallException e) {
                // [vsyscall] lies above the user address space that pagemap covers: the kernel says EFAULT.
                if (!e.is(Errno.EFAULT)) throw e;
                noView = "outside the user address space pagemap covers (" + e.errnoName() + " from PAGEMAP_SCAN)";
                regions = null;
            }
            if (regions != null) {
                long p = 0, s = 0, h = 0, z = 0;
                for (PagemapScan.Region r : regions) {
                    long n = r.pages();
                    if (r.is(PagemapScan.PRESENT)) p += n;
                    if (r.is(PagemapScan.SWAPPED)) s += n;
                    if (r.is(PagemapScan.PRESENT | PagemapScan.HUGE)) h += n;
                    if (r.is(PagemapScan.PFNZERO)) z += n;
                }
                present = p;
                swapped = s;
                boolean full = (ret & PagemapScan.HUGE) != 0;
                huge = full ? h : null;
                zero = full ? z : null;
                // hugetlb pages are mapped at the huge size whether or not the scan calls them huge.
                if (v.hugetlb() && huge != null) huge = p;
            }
        }
        return new InspectReport.Vma(Fmt.hex(sel.start()), Fmt.hex(sel.end()), Fmt.hex(v.start()), Fmt.hex(v.end()),
                v.perms(), PageClassification.backing(v), v.name(), sel.end() - sel.start(), v.kernelPageSize(),
                noView == null, noView, present, swapped, huge, zero, v.pfnMap(),
                v.has(io.guestmem.procfs.VmFlag.LOCKED), Math.max(0, v.locked()), v.vmFlagCodes());
    }

    /**
     * Every page of the selection, in address order, to {@code sink}; {@code progress} gets the pages done
     * after each chunk. Call it only for a VMA whose summary has a page view.
     */
    void pages(Selected sel, Consumer<InspectReport.Page> sink, java.util.function.LongConsumer progress) {
        long pageSize = Posix.PAGE_SIZE;
        long total = sel.pages();
        int cap = (int) Math.min(CHUNK_PAGES, total);
        long[] raw = new long[cap];
        boolean[] huge = new boolean[cap];
        long[] pfns = new long[cap];
        long[] flags = new long[cap];
        KPageFlags kpf = pfnVisible() ? kpageflags() : null;
        for (long done = 0; done < total; ) {
            int n = (int) Math.min(cap, total - done);
            long base = sel.start() + done * pageSize;
            try {
                pagemap.read(base, raw, 0, n);
            } catch (io.guestmem.procfs.AddressRangeException e) {
                return; // above the user address space ([vsyscall]): pagemap has no entries there
            }
            boolean anyPresent = false;
            int k = 0;
            for (int i = 0; i < n; i++) {
                anyPresent |= PagemapEntry.isPresent(raw[i]);
                long p = pagemap.pfnOf(raw[i]);
                if (p >= 0) pfns[k++] = p;
            }
            Arrays.fill(huge, 0, n, false);
            if (anyPresent) {
                try {
                    for (PagemapScan.Region r : scanRegions(base, base + n * pageSize, PagemapScan.HUGE)) {
                        if (!r.is(PagemapScan.HUGE)) continue;
                        int from = (int) ((r.start() - base) / pageSize), to = (int) ((r.end() - base) / pageSize);
                        Arrays.fill(huge, Math.max(0, from), Math.min(n, to), true);
                    }
                } catch (UnsupportedOperationException e) {
                    // fallback without kpageflags: levels of THP pages cannot be told, report base pages
                }
            }
            boolean flagsKnown = kpf != null && k > 0;
            if (flagsKnown) readClustered(kpf, pfns, k, flags);
            int j = 0;
            for (int i = 0; i < n; i++) {
                long e = raw[i];
                long pfn = pagemap.pfnOf(e);
                long f = 0;
                boolean known = false;
                if (pfn >= 0 && flagsKnown) {
                    f = flags[j++];
                    known = true;
                }
                boolean present = PagemapEntry.isPresent(e);
                List<String> names = null;
                if (known) {
                    names = new ArrayList<>();
                    for (KPageFlag kf : KPageFlag.decode(f)) names.add(kf.name());
                }
                long level = PageClassification.levelBytes(present, huge[i], sel.vma());
                sink.accept(new InspectReport.Page(Fmt.hex(base + i * pageSize), present, pfn >= 0 ? Fmt.hex(pfn) : null,
                        PageClassification.levelLabel(level), PageClassification.refcounted(pfn, f, known), names,
                        pagemapBits(e)));
            }
            done += n;
            progress.accept(n);
        }
    }

    /** Why kpageflags is not used, or null (it is, or pfns are hidden anyway). */
    String kpageflagsProblem() {
        return kpageflagsProblem;
    }

    private KPageFlags kpageflags() {
        if (!kpageflagsTried) {
            kpageflagsTried = true;
            try {
                kpageflags = KPageFlags.open();
            } catch (SyscallException e) {
                kpageflagsProblem = e.getMessage();
            }
        }
        return kpageflags;
    }

    private List<PagemapScan.Region> scanRegions(long start, long end, long returnMask) {
        // Only present or swapped pages come back: empty page tables cost nothing to walk or to report.
        return scan.scanAll(start, end, 0, 0, 0, PagemapScan.PRESENT | PagemapScan.SWAPPED, returnMask);
    }

    /**
     * kpageflags of {@code pfns[0..k)} into {@code out[0..k)}: sorted, and each cluster of pfns that are
     * within {@link #PFN_GAP} of each other (up to {@link #PFN_WINDOW} wide) read with one pread.
     */
    static void readClustered(KPageFlags kpf, long[] pfns, int k, long[] out) {
        long[] sorted = Arrays.copyOf(pfns, k);
        Arrays.sort(sorted);
        long[] window = new long[PFN_WINDOW];
        long[] values = new long[k];
        int i = 0;
        while (i < k) {
            long first = sorted[i];
            int j = i + 1;
            while (j < k && sorted[j] - sorted[j - 1] <= PFN_GAP && sorted[j] - first < PFN_WINDOW) j++;
            int len = (int) (sorted[j - 1] - first + 1);
            kpf.readRange(first, window, 0, len);
            for (int x = i; x < j; x++) values[x] = window[(int) (sorted[x] - first)];
            i = j;
        }
        for (int x = 0; x < k; x++) out[x] = values[Arrays.binarySearch(sorted, pfns[x])];
    }

    private static List<String> pagemapBits(long e) {
        List<String> l = new ArrayList<>(2);
        if (PagemapEntry.isExclusive(e)) l.add("exclusive");
        if (PagemapEntry.isFileOrShared(e)) l.add("file");
        if (PagemapEntry.isSwapped(e)) l.add("swapped");
        if (PagemapEntry.isSoftDirty(e)) l.add("soft-dirty");
        if (PagemapEntry.isUffdWp(e)) l.add("uffd-wp");
        if (PagemapEntry.isGuard(e)) l.add("guard");
        return l;
    }

    @Override
    public void close() {
        try {
            scan.close();
        } finally {
            try {
                if (kpageflags != null) kpageflags.close();
            } finally {
                pagemap.close();
            }
        }
    }
}
