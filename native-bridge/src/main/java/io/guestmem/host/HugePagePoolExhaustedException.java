package io.guestmem.host;

import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.SyscallException;

/**
 * A hugetlb mapping could not be reserved: the pool of its size has fewer free pages than asked for.
 * Raised at creation, never later: hugetlb regions are mapped with reservation (no MAP_NORESERVE) so a
 * fault can never end in SIGBUS.
 */
public final class HugePagePoolExhaustedException extends SyscallException {
    private final HugePageSize size;
    private final long pagesAsked;
    private final long pagesFree;

    HugePagePoolExhaustedException(String call, HugePageSize size, long pagesAsked, long pagesFree, String howToReserve) {
        super(Errno.ENOMEM.number, call, "the hugetlb pool of " + size + " pages cannot serve " + pagesAsked + " page"
                + (pagesAsked == 1 ? "" : "s") + " (" + Fmt.size(pagesAsked * size.bytes()) + "): " + pagesFree
                + " free; reserve more with: " + howToReserve);
        this.size = size;
        this.pagesAsked = pagesAsked;
        this.pagesFree = pagesFree;
    }

    public HugePageSize size() {
        return size;
    }

    public long pagesAsked() {
        return pagesAsked;
    }

    public long pagesFree() {
        return pagesFree;
    }
}
