package io.guestmem.gmem;

import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.KPageFlags;
import java.util.Arrays;

/**
 * Whether a pfn is hardware-poisoned, for follow_pfn's HWPOISON answer (KVM returns {@code -EHWPOISON} for a
 * poisoned folio and KVM_RUN fails with it). One path for two sources: the kernel's own
 * {@link KPageFlag#HWPOISON} bit from /proc/kpageflags, and a library-level mark that tests (and a VMM that
 * learned of an error elsewhere) set without harming the host. The kernel bit is set for real only by a
 * memory failure or {@code MADV_HWPOISON}, which takes the page out of service for good: see the destructive
 * test, enabled only with {@code -Dguestmem.destructive=true}.
 *
 * <p>{@link #isPoisoned(long, long)} (the decision on a kpageflags word the caller already read) allocates
 * nothing; marks are a sorted copy-on-write array searched by binary search.
 */
public final class HwPoison implements AutoCloseable {
    private volatile long[] marks = new long[0];
    private KPageFlags kpageflags; // opened on first need

    /** Marks {@code pfn} poisoned at library level (no kernel state changes). */
    public synchronized void mark(long pfn) {
        if (pfn < 0) throw new IllegalArgumentException("not a pfn: " + pfn);
        long[] m = marks;
        int i = Arrays.binarySearch(m, pfn);
        if (i >= 0) return;
        int at = -i - 1;
        long[] n = new long[m.length + 1];
        System.arraycopy(m, 0, n, 0, at);
        n[at] = pfn;
        System.arraycopy(m, at, n, at + 1, m.length - at);
        marks = n;
    }

    /** Removes a library-level mark (the kernel's bit, if any, stays). */
    public synchronized void unmark(long pfn) {
        long[] m = marks;
        int i = Arrays.binarySearch(m, pfn);
        if (i < 0) return;
        long[] n = new long[m.length - 1];
        System.arraycopy(m, 0, n, 0, i);
        System.arraycopy(m, i + 1, n, i, m.length - i - 1);
        marks = n;
    }

    public boolean marked(long pfn) {
        return Arrays.binarySearch(marks, pfn) >= 0;
    }

    /** The decision on a kpageflags word already read for {@code pfn}: the kernel's bit or the library's mark. */
    public boolean isPoisoned(long pfn, long kpageflagsWord) {
        return KPageFlag.HWPOISON.in(kpageflagsWord) || marked(pfn);
    }

    /** Reads /proc/kpageflags for {@code pfn} and decides ({@link #isPoisoned(long, long)}). */
    public boolean isPoisoned(long pfn) {
        return isPoisoned(pfn, kpageflags().read(pfn));
    }

    private synchronized KPageFlags kpageflags() {
        if (kpageflags == null) kpageflags = KPageFlags.open();
        return kpageflags;
    }

    @Override
    public synchronized void close() {
        if (kpageflags != null) kpageflags.close();
        kpageflags = null;
    }
}
