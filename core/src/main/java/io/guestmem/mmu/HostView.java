package io.guestmem.mmu;

import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.PagemapScan;
import io.guestmem.procfs.Smaps;
import io.guestmem.procfs.Vma;
import io.guestmem.sys.Mman;
import io.guestmem.sys.SyscallException;

import java.util.ArrayList;
import java.util.List;

/**
 * The kernel's view of this process's page tables, as core asks the bridge for it: pagemap (the pte: present,
 * pfn, exclusive, file/shared), kpageflags (the page), PAGEMAP_SCAN (PMD/PUD-mapped), smaps (the VMA: flags,
 * permissions, KernelPageSize) and MADV_POPULATE_READ/WRITE (the fault path, honouring VMA permissions).
 * Opened once; the single-page reads use per-thread scratch arrays and allocate nothing after warm-up.
 * Thread-safe. Core never reads /proc itself: this class only calls io.guestmem.procfs and io.guestmem.sys.
 */
public final class HostView implements AutoCloseable {
    private final Pagemap pagemap;
    private final KPageFlags kpageflags; // null when unreadable (no CAP_SYS_ADMIN)
    private final boolean pfnVisible;
    private final ThreadLocal<long[]> one = ThreadLocal.withInitial(() -> new long[1]);
    private final ThreadLocal<PagemapScan> scans;
    private final List<PagemapScan> allScans = new ArrayList<>();
    private volatile boolean closed;

    private HostView() {
        pagemap = Pagemap.openSelf();
        KPageFlags k = null;
        if (pagemap.pfnVisible()) {
            try {
                k = KPageFlags.open();
            } catch (SyscallException e) {
                k = null; // kinds then read NOT_OBSERVED
            }
        }
        kpageflags = k;
        pfnVisible = pagemap.pfnVisible();
        scans = ThreadLocal.withInitial(() -> {
            PagemapScan s = PagemapScan.open(pagemap, 8);
            synchronized (allScans) {
                if (closed) {
                    s.close();
                    throw new IllegalStateException("HostView is closed");
                }
                allScans.add(s);
            }
            return s;
        });
    }

    /** This process's page tables. */
    public static HostView openSelf() {
        return new HostView();
    }

    public boolean pfnVisible() {
        return pfnVisible;
    }

    public boolean kpageflagsReadable() {
        return kpageflags != null;
    }

    /** The raw pagemap entry of the page at {@code hva} (page aligned). */
    public long entry(long hva) {
        long[] b = one.get();
        pagemap.read(hva, b, 0, 1);
        return b[0];
    }

    /** Raw pagemap entries of {@code n} pages from {@code hva} into {@code out[off..]}: one pread. */
    public void entries(long hva, long[] out, int off, int n) {
        pagemap.read(hva, out, off, n);
    }

    /** The pfn of a raw entry: a pfn, {@link PagemapEntry#PFN_HIDDEN} or {@link PagemapEntry#PFN_NONE}. */
    public long pfnOf(long raw) {
        return PagemapEntry.pfn(raw, pfnVisible);
    }

    /** The kpageflags word of {@code pfn}, or {@link RefcountedPage#UNKNOWN_FLAGS}. */
    public long flags(long pfn) {
        if (kpageflags == null || !KvmPfn.isRealPfn(pfn)) return RefcountedPage.UNKNOWN_FLAGS;
        long[] b = one.get();
        kpageflags.readRange(pfn, b, 0, 1);
        return b[0];
    }

    /**
     * kpageflags of {@code pfns[0..n)} into {@code out}: one pread per run of consecutive pfns (a THP or hugetlb
     * page is one run). Entries that are not real pfns get {@link RefcountedPage#UNKNOWN_FLAGS}. Allocation-free.
     */
    public void flags(long[] pfns, long[] out, int n) {
        int i = 0;
        while (i < n) {
            long p = pfns[i];
            if (kpageflags == null || !KvmPfn.isRealPfn(p)) {
                out[i++] = RefcountedPage.UNKNOWN_FLAGS;
                continue;
            }
            int j = i + 1;
            while (j < n && pfns[j] == p + (j - i)) j++;
            kpageflags.readRange(p, out, i, j - i);
            i = j;
        }
    }

    /** {@code MADV_POPULATE_WRITE} (write) or {@code _READ}: 0 or {@code -errno}. */
    public int populate(long hva, long len, boolean write) {
        return Mman.madviseRaw(hva, len, write ? Mman.MADV_POPULATE_WRITE : Mman.MADV_POPULATE_READ);
    }

    /** The VMA holding {@code hva} (smaps: flags, permissions, KernelPageSize), or null. */
    public Vma vma(long hva) {
        return Smaps.vmaOf(hva);
    }

    /**
     * PAGEMAP_SCAN categories of the page at {@code hva} ({@link PagemapScan#PRESENT}, {@link PagemapScan#HUGE},
     * ...), 0 when the walk reported nothing (a hole, a PFNMAP range). Allocation-free after warm-up.
     */
    public long categories(long hva, long pageSize) {
        PagemapScan s = scans.get();
        int n = s.scan(hva, hva + pageSize, PagemapScan.ALL_CATEGORIES & ~PagemapScan.GUARD);
        return n == 0 ? 0 : s.regionCategories(0);
    }

    @Override
    public void close() {
        synchronized (allScans) {
            if (closed) return;
            closed = true;
            for (PagemapScan s : allScans) s.close();
            allScans.clear();
        }
        if (kpageflags != null) kpageflags.close();
        pagemap.close();
    }
}
