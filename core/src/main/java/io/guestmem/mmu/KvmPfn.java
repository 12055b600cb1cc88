package io.guestmem.mmu;

/**
 * KVM's {@code kvm_pfn_t} encoding (include/linux/kvm_host.h), for hot paths that pass pfns as plain
 * {@code long}s (the batch translator, the pfn cache):
 *
 * <ul>
 * <li>a real pfn: {@code 0 <= v < }{@link #MAX_PFN};</li>
 * <li>an error: bits 52..62 non-zero ({@link #ERR_MASK}) — {@link #ERR_FAULT} {@code = ERR_MASK},
 *     {@link #ERR_HWPOISON} {@code +1}, {@link #ERR_RO_FAULT} {@code +2}, {@link #ERR_SIGPENDING} {@code +3},
 *     {@link #ERR_NEEDS_IO} {@code +4};</li>
 * <li>{@link #NOSLOT}: {@code 1 << 63} (inside {@link #NOSLOT_MASK}, outside {@link #ERR_MASK});</li>
 * <li>three library values KVM does not need, because the kernel always sees its own pfns: {@link #HIDDEN}
 *     (the page is present but pagemap withheld its pfn from this reader), {@link #NOT_OBSERVABLE}
 *     (a VM_PFNMAP/VM_IO page: the kernel's page walk skips it, so no reader can see it) and
 *     {@link #GUEST_MEMFD_PRIVATE} (a private guest_memfd page, which has no host page table entry to read a pfn
 *     from). All are successes, not errors, and none is ever a pfn: the library never reports 0 or a made-up
 *     number as a pfn.</li>
 * </ul>
 */
public final class KvmPfn {
    private KvmPfn() {}

    /** {@code KVM_PFN_ERR_MASK}: {@code 0x7ffULL << 52}. */
    public static final long ERR_MASK = 0x7ffL << 52;
    /** {@code KVM_PFN_ERR_NOSLOT_MASK}: {@code 0xfffULL << 52}. */
    public static final long NOSLOT_MASK = 0xfffL << 52;
    /** {@code KVM_PFN_NOSLOT}: {@code 1ULL << 63}. */
    public static final long NOSLOT = 1L << 63;
    public static final long ERR_FAULT = ERR_MASK;
    public static final long ERR_HWPOISON = ERR_MASK + 1;
    public static final long ERR_RO_FAULT = ERR_MASK + 2;
    public static final long ERR_SIGPENDING = ERR_MASK + 3;
    public static final long ERR_NEEDS_IO = ERR_MASK + 4;

    /** Real pfns are below this (bit 51 and above are never a pfn: 2^51 pages is beyond any physical space). */
    public static final long MAX_PFN = 1L << 51;
    /** Present, but the pfn is withheld from this reader (pagemap without CAP_SYS_ADMIN). Not an error. */
    public static final long HIDDEN = MAX_PFN | 1;
    /** A VM_PFNMAP/VM_IO page: pagemap never shows it. Not an error. */
    public static final long NOT_OBSERVABLE = MAX_PFN | 2;
    /**
     * A private guest_memfd page resolved through its file and offset: the folio exists, but without a host page
     * table entry (which a private page never has) no reader can see its pfn. Not an error.
     */
    public static final long GUEST_MEMFD_PRIVATE = MAX_PFN | 3;

    /** {@code is_error_pfn}. */
    public static boolean isError(long pfn) {
        return (pfn & ERR_MASK) != 0;
    }

    /** {@code is_error_noslot_pfn}. */
    public static boolean isErrorOrNoslot(long pfn) {
        return (pfn & NOSLOT_MASK) != 0;
    }

    /** {@code is_noslot_pfn}. */
    public static boolean isNoslot(long pfn) {
        return pfn == NOSLOT;
    }

    /** A real, observed pfn (not an error, not {@link #HIDDEN}, {@link #NOT_OBSERVABLE} or {@link #GUEST_MEMFD_PRIVATE}). */
    public static boolean isRealPfn(long pfn) {
        return pfn >= 0 && pfn < MAX_PFN;
    }

    /** A readable name of an encoded value, e.g. {@code pfn 0x1234}, {@code ERR_RO_FAULT}. */
    public static String describe(long pfn) {
        if (isRealPfn(pfn)) return "pfn 0x" + Long.toHexString(pfn);
        if (pfn == HIDDEN) return "pfn hidden";
        if (pfn == NOT_OBSERVABLE) return "pfn not observable (PFNMAP)";
        if (pfn == GUEST_MEMFD_PRIVATE) return "pfn not observable (private guest_memfd page, never host-mapped)";
        PfnError e = PfnError.of(pfn);
        return e == null ? "0x" + Long.toHexString(pfn) : "ERR_" + e.name();
    }
}
