package io.guestmem.vhost;

import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import java.nio.ByteBuffer;

/**
 * One region of the front-end's memory table ({@code VhostUserMemoryRegion}): {@code size} bytes of guest
 * physical memory at {@code gpa}, which the front-end itself maps at {@code userAddr} (its own virtual
 * address: the vring addresses it sends are in that space) and which lie at {@code mmapOffset} in the fd sent
 * with it.
 */
public record MemoryRegion(long gpa, long size, long userAddr, long mmapOffset) {
    /** Four u64 on the wire. */
    public static final int BYTES = 32;

    /** The region at {@code offset} of a payload, checked: page-aligned, non-empty, no range that wraps. */
    static MemoryRegion read(ByteBuffer b, int offset, String request) {
        MemoryRegion r = new MemoryRegion(b.getLong(offset), b.getLong(offset + 8), b.getLong(offset + 16), b.getLong(offset + 24));
        long page = Posix.PAGE_SIZE;
        if (r.size <= 0 || r.size % page != 0 || r.gpa % page != 0 || r.userAddr % page != 0 || r.mmapOffset % page != 0
                || r.gpa + r.size < r.gpa || r.userAddr + r.size < r.userAddr || r.mmapOffset + r.size < r.mmapOffset)
            throw new VhostUserException(Errno.EINVAL, request, r + " is not a page-aligned, non-empty range that stays below 2^64");
        return r;
    }

    /** Whether {@code [addr, addr + len)} of the front-end's address space lies in this region. */
    public boolean containsUser(long addr, long len) {
        return Long.compareUnsigned(addr, userAddr) >= 0 && len >= 0
                && Long.compareUnsigned(addr - userAddr, size) < 0 && Long.compareUnsigned(len, size - (addr - userAddr)) <= 0;
    }

    public boolean sameRange(MemoryRegion o) {
        return gpa == o.gpa && size == o.size && userAddr == o.userAddr;
    }

    @Override
    public String toString() {
        return "region gpa " + Fmt.hex(gpa) + " size " + Fmt.hex(size) + " uva " + Fmt.hex(userAddr) + " offset " + Fmt.hex(mmapOffset);
    }
}
