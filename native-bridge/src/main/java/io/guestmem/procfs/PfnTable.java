package io.guestmem.procfs;

import io.guestmem.sys.Fmt;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * A pfn-indexed procfs table ({@code /proc/kpageflags}, {@code /proc/kpagecount}): one 8-byte entry per
 * pfn, readable only with CAP_SYS_ADMIN. Batches over arbitrary pfns are sorted and coalesced so that
 * every run of contiguous pfns costs one pread.
 */
abstract sealed class PfnTable extends ProcFile permits KPageFlags, KPageCount {
    PfnTable(String path) {
        super(path, 0);
    }

    /**
     * Fills {@code out} (native, {@code count * 8} bytes) with the entries of pfns
     * {@code [firstPfn, firstPfn + count)}: one pread (per chunk). Allocates nothing.
     */
    public void readRange(long firstPfn, long count, MemorySegment out) {
        checkRange(firstPfn, count);
        checkNative(out, count * 8);
        finish(firstPfn, count, readEntries(firstPfn, count, out));
    }

    /** Fills {@code out[off .. off+count)} with the entries of pfns {@code [firstPfn, firstPfn + count)}. */
    public void readRange(long firstPfn, long[] out, int off, int count) {
        checkRange(firstPfn, count);
        if (off < 0 || off + count > out.length || off + count < 0)
            throw new IndexOutOfBoundsException("out[" + off + ".." + (off + (long) count) + ") of " + out.length);
        finish(firstPfn, count, readEntries(firstPfn, out, off, count));
    }

    /** The entry of one pfn. */
    public long read(long pfn) {
        long[] one = new long[1];
        readRange(pfn, one, 0, 1);
        return one[0];
    }

    /**
     * The entries of arbitrary pfns, {@code out[i]} for {@code pfns[i]}: the pfns are sorted and deduplicated
     * and each run of contiguous pfns is read with one pread. Every pfn must be a real pfn (not
     * {@link PagemapEntry#PFN_NONE} or {@code PFN_HIDDEN}).
     */
    public void read(long[] pfns, long[] out) {
        if (out.length < pfns.length)
            throw new IllegalArgumentException("out has " + out.length + " slots for " + pfns.length + " pfns");
        if (pfns.length == 0) return;
        long[] sorted = pfns.clone();
        Arrays.sort(sorted);
        if (sorted[0] < 0)
            throw new IllegalArgumentException("not a pfn: " + sorted[0]
                    + (sorted[0] == PagemapEntry.PFN_HIDDEN ? " (PFN_HIDDEN)" : sorted[0] == PagemapEntry.PFN_NONE ? " (PFN_NONE)" : ""));
        int unique = 1;
        for (int i = 1; i < sorted.length; i++) if (sorted[i] != sorted[unique - 1]) sorted[unique++] = sorted[i];
        long[] values = new long[unique];
        for (int runStart = 0; runStart < unique; ) {
            int runEnd = runStart + 1;
            while (runEnd < unique && sorted[runEnd] == sorted[runEnd - 1] + 1) runEnd++;
            readRange(sorted[runStart], values, runStart, runEnd - runStart);
            runStart = runEnd;
        }
        for (int i = 0; i < pfns.length; i++) out[i] = values[Arrays.binarySearch(sorted, 0, unique, pfns[i])];
    }

    /** {@link #read(long[], long[])} into a new array. */
    public long[] read(long[] pfns) {
        long[] out = new long[pfns.length];
        read(pfns, out);
        return out;
    }

    private void checkRange(long firstPfn, long count) {
        if (count <= 0) throw new IllegalArgumentException("pfn count must be positive, got " + count);
        if (firstPfn < 0)
            throw new IllegalArgumentException("not a pfn: " + firstPfn
                    + (firstPfn == PagemapEntry.PFN_HIDDEN ? " (PFN_HIDDEN)" : firstPfn == PagemapEntry.PFN_NONE ? " (PFN_NONE)" : ""));
        if (firstPfn > (Long.MAX_VALUE >> 3) - count)
            throw new AddressRangeException("pfns " + Fmt.hex(firstPfn) + "+" + count + " are beyond any " + path + " offset");
    }

    private void finish(long firstPfn, long count, long got) {
        if (got != count)
            throw new AddressRangeException(path + " ends at pfn " + Fmt.hex(firstPfn + got) + " (the last pfn the "
                    + "kernel exports): asked for " + count + " from pfn " + Fmt.hex(firstPfn));
    }
}
