package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;

import java.util.List;

/**
 * One invalidation between {@code invalidate_range_start} and {@code invalidate_range_end}: returned by
 * {@link MmuNotifier#invalidate(long, long)} and {@link MmuNotifier#invalidateGfn(int, long, long)}, ended
 * by {@link #close()} (idempotent; any thread may close it):
 *
 * <pre>{@code
 * try (var inv = notifier.invalidate(hva, hva + len)) {
 *     Mman.munmap(hva, len);
 * }
 * }</pre>
 */
public final class Invalidation implements AutoCloseable {

    /**
     * Guest frames {@code [start, end)} of {@code addressSpace} being invalidated; {@code slot} is the slot they
     * belong to (null for {@link MmuNotifier#invalidateGfn}, which does not look at slots).
     */
    public record GfnRange(int addressSpace, long start, long end, Memslot slot) {}

    private final MmuNotifier notifier;
    private final long hvaStart, hvaEnd;
    private final List<GfnRange> ranges;
    private final MemslotChange memslotChange;
    final boolean hvaDriven;  // counts in the notifier's active hva invalidations (mn_active_invalidate_count)
    final Thread owner;
    boolean ended;            // guarded by the notifier's lock

    Invalidation(MmuNotifier notifier, long hvaStart, long hvaEnd, List<GfnRange> ranges,
                 MemslotChange memslotChange, boolean hvaDriven) {
        this.notifier = notifier;
        this.hvaStart = hvaStart;
        this.hvaEnd = hvaEnd;
        this.ranges = List.copyOf(ranges);
        this.memslotChange = memslotChange;
        this.hvaDriven = hvaDriven;
        this.owner = Thread.currentThread();
    }

    /** First hva of the range, or -1 for a gfn invalidation. */
    public long hvaStart() {
        return hvaStart;
    }

    /** End (exclusive) of the hva range, or -1 for a gfn invalidation. */
    public long hvaEnd() {
        return hvaEnd;
    }

    public boolean hasHvaRange() {
        return hvaStart >= 0;
    }

    /** The gfn ranges this invalidation covers (empty: no memslot maps the hva range; nothing was counted). */
    public List<GfnRange> ranges() {
        return ranges;
    }

    /** True when this invalidation counts in {@code mmu_invalidate_in_progress} and will bump the sequence. */
    public boolean affectsGuest() {
        return !ranges.isEmpty();
    }

    /** The memslot change that caused it, or null for hva and gfn invalidations. */
    public MemslotChange memslotChange() {
        return memslotChange;
    }

    /** {@code invalidate_range_end}. */
    @Override
    public void close() {
        notifier.end(this);
    }

    @Override
    public String toString() {
        return "Invalidation[" + (hasHvaRange() ? "hva 0x" + Long.toHexString(hvaStart) + "-0x"
                + Long.toHexString(hvaEnd) + ", " : "") + ranges + (memslotChange != null ? ", " + memslotChange.kind() : "")
                + "]";
    }
}
