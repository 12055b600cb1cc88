package io.guestmem.host;

import io.guestmem.sys.Fmt;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A window on part of a {@link HostRegion} with a lifetime of its own (see {@link HostRegion#view}): its
 * segment is bound to its own shared arena, closed by {@link #close()} or by the region's close, so an
 * access through it (or any slice or buffer made from it) afterwards throws IllegalStateException from
 * any thread instead of touching memory that may be unmapped. Closing a view never unmaps anything.
 */
public final class RegionView implements AutoCloseable {
    private final HostRegion region;
    private final long offset;
    private final Arena arena;
    private final MemorySegment segment;

    RegionView(HostRegion region, long offset, long size, long address, boolean readOnly) {
        this.region = region;
        this.offset = offset;
        this.arena = Arena.ofShared();
        MemorySegment s = MemorySegment.ofAddress(address).reinterpret(size, arena, null);
        this.segment = readOnly ? s.asReadOnly() : s;
    }

    /** The memory of the window; throws IllegalStateException on use once the view is closed. */
    public MemorySegment segment() {
        return segment;
    }

    public HostRegion region() {
        return region;
    }

    /** Offset of the window inside its region. */
    public long offset() {
        return offset;
    }

    public long size() {
        return segment.byteSize();
    }

    public boolean isOpen() {
        return arena.scope().isAlive();
    }

    /**
     * Invalidates the segment (a thread handshake: returns once no thread is inside an access through it).
     * Idempotent. IllegalStateException if an I/O call holds a buffer over it right now.
     */
    @Override
    public void close() {
        synchronized (this) {
            if (arena.scope().isAlive()) arena.close();
        }
        region.viewClosed(this);
    }

    @Override
    public String toString() {
        return "view " + Fmt.hex(offset) + "+" + Fmt.size(segment.byteSize()) + " of " + region;
    }
}
