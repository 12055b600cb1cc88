package io.guestmem.host;

import io.guestmem.sys.Fmt;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Collection;

/**
 * One segment from the lowest to the highest address of some {@link RegionView}s, the memory between them
 * included, in a shared arena of its own. What a user of many views needs when one segment shared by all of
 * them is cheaper than one per view (a guest-memory fast path: one segment object, one scope check, a few
 * cache lines of metadata for every access, where per-view segments cost TLB and cache misses on the
 * objects themselves).
 *
 * <p>The memory between the views is not the views' memory and may not be mapped at all: the owner may only
 * access the span inside a view that is still open. {@link #close()} invalidates the segment (a thread
 * handshake, as for a view), so the owner closes the span before any view it covers closes or its region
 * unmaps; a thread still holding the segment then gets IllegalStateException, never unmapped memory.
 * Closing a span never unmaps anything.
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
     * A span over {@code [lowest view address, highest view end)}. Every view must be open (else
     * IllegalStateException): the span is made from memory that is mapped now.
     */
    public static HostSpan covering(Collection<RegionView> views) {
        if (views.isEmpty()) throw new IllegalArgumentException("a span covers at least one view");
        long lo = Long.MAX_VALUE, hi = 0;
        for (RegionView v : views) {
            if (!v.isOpen()) throw new IllegalStateException(v + " is closed");
            MemorySegment s = v.segment();
            lo = Math.min(lo, s.address());
            hi = Math.max(hi, s.address() + s.byteSize());
        }
        return new HostSpan(lo, hi - lo);
    }

    /**
     * A new span, in an arena of its own, over this span's range extended to the end of {@code more} (null for
     * none), for an owner that publishes a successor of its table and then closes this span: the successor's
     * offsets from {@link #address()} stay valid. This span must be open (its range was made from mapped views,
     * and the owner's contract about the memory between views is unchanged); {@code more} must be open and
     * must not start below this span (IllegalArgumentException: the address would change).
     */
    public HostSpan renewed(RegionView more) {
        if (!isOpen()) throw new IllegalStateException(this + " is closed");
        long lo = segment.address(), hi = lo + segment.byteSize();
        if (more != null) {
            if (!more.isOpen()) throw new IllegalStateException(more + " is closed");
            MemorySegment s = more.segment();
            if (s.address() < lo) throw new IllegalArgumentException(more + " starts below " + this);
            hi = Math.max(hi, s.address() + s.byteSize());
        }
        return new HostSpan(lo, hi - lo);
    }

    /** The memory from the first view's start to the last one's end; IllegalStateException on use once closed. */
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
