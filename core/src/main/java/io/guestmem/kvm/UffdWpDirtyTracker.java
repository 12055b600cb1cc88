package io.guestmem.kvm;

import io.guestmem.KvmException;
import io.guestmem.memslot.Memslot;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapScan;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import io.guestmem.sys.UseAfterClose;
import io.guestmem.sys.Userfaultfd;
import java.util.Arrays;

/**
 * A dirty tracker that needs nothing from KVM: the slot's host range is registered with userfaultfd in
 * asynchronous write-protect mode ({@code UFFD_FEATURE_WP_ASYNC | WP_UNPOPULATED}), so a write to a protected
 * page is resolved by the kernel itself (no fault handler) and leaves the page "written". {@link #collect()}
 * is one {@code PAGEMAP_SCAN} with {@code PAGE_IS_WRITTEN} and {@code PM_SCAN_WP_MATCHING |
 * PM_SCAN_CHECK_WPASYNC}: it returns the written pages and write-protects them again in the same walk.
 *
 * <p>Why it sees guest writes: write-protecting host PTEs fires the MMU notifier, KVM drops its mappings of
 * those pages, and the guest's next write faults through the host page tables, where the async WP resolves
 * it and marks the PTE written. It sees host writes too (any write through the range), unlike KVM's log.
 */
public final class UffdWpDirtyTracker implements SlotDirtyTracker {
    /** The features this tracker cannot work without. */
    public static final long REQUIRED = Userfaultfd.FEATURE_WP_ASYNC | Userfaultfd.FEATURE_WP_UNPOPULATED;

    private final Memslot slot;
    private final long start, end;
    private final Userfaultfd uffd;
    private final Pagemap pagemap;
    private final PagemapScan scan;
    private boolean closed;

    private UffdWpDirtyTracker(Memslot slot, Userfaultfd uffd, Pagemap pagemap, PagemapScan scan) {
        this.slot = slot;
        this.start = slot.userspaceAddr();
        this.end = start + slot.npages() * Posix.PAGE_SIZE;
        this.uffd = uffd;
        this.pagemap = pagemap;
        this.scan = scan;
    }

    /**
     * Registers the slot's hva range and write-protects it, so the first {@link #collect()} reports the pages
     * written from now on. Throws {@link KvmException} EOPNOTSUPP naming the missing features where the
     * kernel lacks them; everything opened is closed on failure.
     */
    public static UffdWpDirtyTracker start(Memslot slot) {
        long len = slot.npages() * Posix.PAGE_SIZE;
        String op = "uffd-wp dirty tracking of slot " + slot.id() + " (" + Fmt.hex(slot.userspaceAddr()) + ", " + Fmt.size(len) + ")";
        if (slot.guestMemfd())
            throw new KvmException(Errno.EINVAL, op, "guest_memfd memory is not tracked through host page tables");
        Userfaultfd uffd = Userfaultfd.open(false);
        Pagemap pagemap = null;
        PagemapScan scan = null;
        try {
            // Shared and hugetlb memory need WP_HUGETLBFS_SHMEM as well; ask for it, require only what anon needs.
            Userfaultfd.Api api = uffd.api(REQUIRED | Userfaultfd.FEATURE_WP_HUGETLBFS_SHMEM);
            if ((api.features() & REQUIRED) != REQUIRED)
                throw new KvmException(Errno.EOPNOTSUPP, op, "the kernel granted userfaultfd features "
                        + Fmt.hex(api.features()) + ", lacking WP_ASYNC|WP_UNPOPULATED " + Fmt.hex(REQUIRED & ~api.features()));
            uffd.register(slot.userspaceAddr(), len, Userfaultfd.MODE_WP);
            uffd.writeProtect(slot.userspaceAddr(), len, true);
            pagemap = Pagemap.openSelf();
            scan = PagemapScan.open(pagemap);
            if (!scan.usesIoctl())
                throw new KvmException(Errno.EOPNOTSUPP, op, "PAGEMAP_SCAN is not offered by this kernel (6.7+)");
            return new UffdWpDirtyTracker(slot, uffd, pagemap, scan);
        } catch (RuntimeException e) {
            if (scan != null) scan.close();
            if (pagemap != null) pagemap.close();
            uffd.close();
            throw e;
        }
    }

    @Override
    public String name() {
        return "uffd-wp + PAGEMAP_SCAN";
    }

    @Override
    public Memslot slot() {
        return slot;
    }

    @Override
    public synchronized long[] collect() {
        if (closed) throw UseAfterClose.of(name() + " of slot " + slot.id(), "collect()");
        long[] out = new long[16];
        int n = 0;
        long from = start;
        while (from < end) {
            int regions = scan.scan(from, end, PagemapScan.WP_MATCHING | PagemapScan.CHECK_WPASYNC, 0,
                    PagemapScan.WRITTEN, 0, PagemapScan.WRITTEN, 0);
            for (int i = 0; i < regions; i++) {
                for (long a = scan.regionStart(i); a < scan.regionEnd(i); a += Posix.PAGE_SIZE) {
                    if (n == out.length) out = Arrays.copyOf(out, n * 2);
                    out[n++] = slot.baseGfn() + (a - start) / Posix.PAGE_SIZE;
                }
            }
            long next = scan.walkEnd();
            if (next <= from) throw new IllegalStateException("PAGEMAP_SCAN made no progress at " + Fmt.hex(from));
            from = next;
        }
        return Arrays.copyOf(out, n);
    }

    /** Unregisters the range (if still mapped) and closes the userfaultfd and the pagemap. */
    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        try {
            scan.close();
            pagemap.close();
        } finally {
            uffd.close(); // the kernel unregisters the range with the last reference to the fd
        }
    }
}
