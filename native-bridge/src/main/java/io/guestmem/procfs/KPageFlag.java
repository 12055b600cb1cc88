package io.guestmem.procfs;

import java.util.EnumSet;
import java.util.Set;

/**
 * The bits of a {@code /proc/kpageflags} entry: the stable {@code KPF_*} bits 0-26 of
 * include/uapi/linux/kernel-page-flags.h, and the "kernel hacking assistance" bits 32-42 of
 * include/linux/kernel-page-flags.h (which the kernel says may change: report them, don't build on them).
 *
 * <p>Hot paths test the raw word against {@link #mask}: {@code (flags & KPageFlag.THP.mask) != 0}.
 */
public enum KPageFlag {
    LOCKED(0), ERROR(1), REFERENCED(2), UPTODATE(3), DIRTY(4), LRU(5), ACTIVE(6), SLAB(7), WRITEBACK(8),
    RECLAIM(9), BUDDY(10), MMAP(11), ANON(12), SWAPCACHE(13), SWAPBACKED(14), COMPOUND_HEAD(15),
    COMPOUND_TAIL(16), HUGE(17), UNEVICTABLE(18), HWPOISON(19), NOPAGE(20), KSM(21), THP(22), OFFLINE(23),
    ZERO_PAGE(24), IDLE(25), PGTABLE(26),
    // Kernel-hacking bits. MAPPEDTODISK also shows PG_anon_exclusive, which aliases PG_mappedtodisk.
    RESERVED(32), MLOCKED(33), MAPPEDTODISK(34), PRIVATE(35), PRIVATE_2(36), OWNER_PRIVATE(37), ARCH(38),
    UNCACHED(39), SOFTDIRTY(40), ARCH_2(41), ARCH_3(42);

    /** The bit number. */
    public final int bit;
    /** {@code 1L << bit}. */
    public final long mask;

    private static final KPageFlag[] BY_BIT = new KPageFlag[64];
    /** Every bit this enum names. */
    public static final long KNOWN_MASK;

    static {
        long known = 0;
        for (KPageFlag f : values()) {
            BY_BIT[f.bit] = f;
            known |= f.mask;
        }
        KNOWN_MASK = known;
    }

    KPageFlag(int bit) {
        this.bit = bit;
        this.mask = 1L << bit;
    }

    /** Whether the raw word has this flag. */
    public boolean in(long flags) {
        return (flags & mask) != 0;
    }

    /** The flag of a bit number, or null for a bit this enum does not name. */
    public static KPageFlag ofBit(int bit) {
        return bit >= 0 && bit < 64 ? BY_BIT[bit] : null;
    }

    /** The named flags of a raw word (bits without a name are dropped; see {@link #KNOWN_MASK}). */
    public static Set<KPageFlag> decode(long flags) {
        EnumSet<KPageFlag> set = EnumSet.noneOf(KPageFlag.class);
        for (long f = flags & KNOWN_MASK; f != 0; f &= f - 1) set.add(BY_BIT[Long.numberOfTrailingZeros(f)]);
        return set;
    }

    /** The raw word of a set of flags. */
    public static long maskOf(KPageFlag... flags) {
        long m = 0;
        for (KPageFlag f : flags) m |= f.mask;
        return m;
    }
}
