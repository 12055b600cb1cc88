package io.guestmem.procfs;

import java.util.Set;

/**
 * {@code /proc/kpageflags}: the flags of each physical page, as {@link KPageFlag} bits (needs CAP_SYS_ADMIN).
 * Open once, read many; batches over pfns are sorted and coalesced into one pread per contiguous run.
 */
public final class KPageFlags extends PfnTable {
    public static final String PATH = "/proc/kpageflags";

    private KPageFlags() {
        super(PATH);
    }

    public static KPageFlags open() {
        return new KPageFlags();
    }

    /** The named flags of one pfn. */
    public Set<KPageFlag> flags(long pfn) {
        return KPageFlag.decode(read(pfn));
    }
}
