package io.guestmem.procfs;

import io.guestmem.sys.Fmt;
import java.util.OptionalLong;

/**
 * One 64-bit {@code /proc/<pid>/pagemap} entry (Documentation/admin-guide/mm/pagemap.rst), decoded.
 *
 * <p>Hot paths decode the raw {@code long} with the static helpers and allocate nothing; the record is for
 * callers that want a value. {@code pfnVisible} says whether the file that produced the entry shows pfns:
 * without CAP_SYS_ADMIN (in the initial user namespace) the kernel zeroes the pfn field of present pages,
 * and a zeroed field must never be handed out as pfn 0.
 *
 * @param address    the virtual address of the page the entry describes
 * @param raw        the entry as the kernel wrote it
 * @param pfnVisible whether the reader was allowed to see pfns
 */
public record PagemapEntry(long address, long raw, boolean pfnVisible) {
    /** Bits 0-54: the pfn of a present page (zeroed when hidden); swap type and offset of a swapped one. */
    public static final long PFN_MASK = (1L << 55) - 1;
    public static final int SOFT_DIRTY_BIT = 55, EXCLUSIVE_BIT = 56, UFFD_WP_BIT = 57, GUARD_BIT = 58;
    public static final int FILE_BIT = 61, SWAPPED_BIT = 62, PRESENT_BIT = 63;

    /** The result of {@link #pfn(long, boolean)} for a page that is not present: there is no pfn. */
    public static final long PFN_NONE = -1;
    /** The result of {@link #pfn(long, boolean)} for a present page whose pfn the kernel withheld. */
    public static final long PFN_HIDDEN = -2;

    /** What can be said about the pfn of an entry. */
    public enum PfnState {
        /** Present, and the pfn is the kernel's. */
        VISIBLE,
        /** Present, but the kernel zeroed the pfn for this reader (no CAP_SYS_ADMIN). */
        HIDDEN,
        /** Not present (never touched, swapped out, or a range the page walk skips such as VM_PFNMAP). */
        NONE
    }

    public static boolean isPresent(long raw) {
        return raw < 0; // bit 63
    }

    public static boolean isSwapped(long raw) {
        return (raw & (1L << SWAPPED_BIT)) != 0;
    }

    /** Page cache or shared anonymous (shmem) page: not a private anonymous page. */
    public static boolean isFileOrShared(long raw) {
        return (raw & (1L << FILE_BIT)) != 0;
    }

    /** The page is mapped only in this process ({@code PM_MMAP_EXCLUSIVE}). */
    public static boolean isExclusive(long raw) {
        return (raw & (1L << EXCLUSIVE_BIT)) != 0;
    }

    /** The soft-dirty bit (always clear on kernels built without CONFIG_MEM_SOFT_DIRTY). */
    public static boolean isSoftDirty(long raw) {
        return (raw & (1L << SOFT_DIRTY_BIT)) != 0;
    }

    /** The PTE is userfaultfd write-protected. */
    public static boolean isUffdWp(long raw) {
        return (raw & (1L << UFFD_WP_BIT)) != 0;
    }

    /** A guard region installed by MADV_GUARD_INSTALL (6.15). */
    public static boolean isGuard(long raw) {
        return (raw & (1L << GUARD_BIT)) != 0;
    }

    /**
     * The pfn of a raw entry: the pfn when present and visible, {@link #PFN_HIDDEN} when present but
     * withheld, {@link #PFN_NONE} when not present. Never 0 for a hidden pfn: a present entry whose field
     * is 0 is hidden even if {@code pfnVisible} claims otherwise (no user page lives at pfn 0).
     */
    public static long pfn(long raw, boolean pfnVisible) {
        if (raw >= 0) return PFN_NONE;
        long pfn = raw & PFN_MASK;
        return pfnVisible && pfn != 0 ? pfn : PFN_HIDDEN;
    }

    /** The swap type (bits 0-4) of a swapped entry; -1 when the entry is not a swap entry. */
    public static int swapType(long raw) {
        return isSwapped(raw) && !isPresent(raw) ? (int) (raw & 0x1f) : -1;
    }

    /** The swap offset (bits 5-54) of a swapped entry; -1 when the entry is not a swap entry. */
    public static long swapOffset(long raw) {
        return isSwapped(raw) && !isPresent(raw) ? (raw & PFN_MASK) >>> 5 : -1;
    }

    public boolean present() {
        return isPresent(raw);
    }

    public boolean swapped() {
        return isSwapped(raw);
    }

    public boolean fileOrShared() {
        return isFileOrShared(raw);
    }

    public boolean exclusive() {
        return isExclusive(raw);
    }

    public boolean softDirty() {
        return isSoftDirty(raw);
    }

    public boolean uffdWp() {
        return isUffdWp(raw);
    }

    public boolean guard() {
        return isGuard(raw);
    }

    public PfnState pfnState() {
        long p = pfn(raw, pfnVisible);
        return p == PFN_NONE ? PfnState.NONE : p == PFN_HIDDEN ? PfnState.HIDDEN : PfnState.VISIBLE;
    }

    /** The pfn when present and visible; empty when not present or hidden (see {@link #pfnState()}). */
    public OptionalLong pfn() {
        long p = pfn(raw, pfnVisible);
        return p >= 0 ? OptionalLong.of(p) : OptionalLong.empty();
    }

    @Override
    public String toString() {
        StringBuilder b = new StringBuilder("PagemapEntry[").append(Fmt.hex(address)).append(' ');
        switch (pfnState()) {
            case VISIBLE -> b.append("pfn=").append(Fmt.hex(raw & PFN_MASK));
            case HIDDEN -> b.append("pfn=hidden");
            case NONE -> b.append(swapped() ? "swapped type=" + swapType(raw) + " offset=" + Fmt.hex(swapOffset(raw))
                    : "not present");
        }
        if (fileOrShared()) b.append(" file/shared");
        if (exclusive()) b.append(" exclusive");
        if (softDirty()) b.append(" soft-dirty");
        if (uffdWp()) b.append(" uffd-wp");
        if (guard()) b.append(" guard");
        return b.append(" raw=").append(Fmt.hex(raw)).append(']').toString();
    }
}
