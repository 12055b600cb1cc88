package io.guestmem.host;

import io.guestmem.sys.Fmt;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Collection;

/**
 * One segment from the lowest to the highest address of some {@link HostRegion}s, the memory between them
 * included, in a shared arena of its own. What a user of many windows on those regions needs when one
 * segment shared by all of them is cheaper than one per window (a guest-memory fast path: one segment
 * object, one scope check, a few cache lines of metadata for every access, where per-view segments cost TLB
 * and cache misses on the objects themselves).
 *
 * <p>The span covers whole regions, not only the parts in use, so that a user adding a window inside a
 * region it already covers keeps the span it has: no new arena, and no handshake to retire the old one.
 *
 * <p>The memory between the regions is not theirs and may not be mapped at all: the owner may only access
 * the span inside a region (and a window of it) that is still open. {@link #close()} invalidates the segment
 * (a thread handshake, as for a view), so the owner closes the span before any region it covers unmaps; a
 * thread still holding the segment then gets IllegalStateException, never unmapped memory. Closing a span
 * never unmaps anything.
 *
 * <p>This is the only place outside {@link HostRegion} and {@link RegionView} that makes a segment over raw
 * host addresses ({@code MemorySegment.reinterpret}, a restricted method), which is why it lives here.
 */
public final class HostSpan implements AutoCloseable {
    private final Arena arena;
    private final MemorySegment segment;

    private HostSpan(long address, long size) {
        this.arena = Arena.ofShared();
        this.segment = MemorySegment.ofAddress(address).reinterpret(size, arena, null);
    }

    /**
     * A span over {@code [lowest region address, highest region end)}. Every region must be open (else
     * IllegalStateException): the span is made from memory that is mapped now.
     */
    public static HostSpan covering(Collection<HostRegion> regions) {
        if (regions.isEmpty()) throw new IllegalArgumentException("a span covers at least one region");
        long lo = Long.MAX_VALUE, hi = 0;
        for (HostRegion r : regions) {
            if (!r.isOpen()) throw new IllegalStateException(r + " is closed");
            lo = Math.min(lo, r.address());
            hi = Math.max(hi, r.address() + r.size());
        }
        return new HostSpan(lo, hi - lo);
    }

    /** Whether {@code region} lies inside this span. */
    public boolean covers(HostRegion region) {
        long lo = segment.address();
        return region.address() >= lo && region.address() + region.size() <= lo + segment.byteSize();
    }

    /**
     * A new span, in an arena of its own, over this span's range extended to the end of {@code more} (null for
     * none), for an owner that publishes a successor of its table and then closes this span: the successor's
     * offsets from {@link #address()} stay valid. This span must be open (its range was made from mapped
     * regions, and the owner's contract about the memory between them is unchanged); {@code more} must be
     * open and must not start below this span (IllegalArgumentException: the address would change).
     */
    public HostSpan renewed(HostRegion more) {
        if (!isOpen()) throw new IllegalStateException(this + " is closed");
        long lo = segment.address(), hi = lo + segment.byteSize();
        if (more != null) {
            if (!more.isOpen()) throw new IllegalStateException(more + " is closed");
            if (more.address() < lo) throw new IllegalArgumentException(more + " starts below " + this);
            hi = Math.max(hi, more.address() + more.size());
        }
        return new HostSpan(lo, hi - lo);
    }

    /** The memory from the first region's start to the last one's end; IllegalStateException on use once closed. */
    public MemorySegment segment() {
        return segment;
    }

    /** The host address of the span's first byte. */
    public long address() {
        return segment.address();
    }

    public boolean isOpen() {
        return arena.scope().isAlive();
    }

    /** Invalidates the segment (returns once no thread is inside an access through it). Idempotent. */
    @Override
    public synchronized void close() {
        if (arena.scope().isAlive()) arena.close();
    }

    @Override
    public String toString() {
        return "host span " + Fmt.hex(segment.address()) + "+" + Fmt.size(segment.byteSize());
    }
}
