package io.guestmem.mmu;

/**
 * The error kinds of KVM's pfn lookups, as values ({@code KVM_PFN_NOSLOT} and the {@code KVM_PFN_ERR_*}
 * constants of include/linux/kvm_host.h). {@link #code} is KVM's 64-bit encoding (see {@link KvmPfn}).
 */
public enum PfnError {
    /** No memslot holds the gfn, or the slot is being deleted/moved ({@code KVM_PFN_NOSLOT}). */
    NOSLOT(KvmPfn.NOSLOT),
    /** The hva cannot be resolved to a pfn KVM may use ({@code KVM_PFN_ERR_FAULT}; x86 turns it into -EFAULT). */
    FAULT(KvmPfn.ERR_FAULT),
    /** The page is poisoned ({@code KVM_PFN_ERR_HWPOISON}; x86 sends SIGBUS BUS_MCEERR_AR to the vCPU thread). */
    HWPOISON(KvmPfn.ERR_HWPOISON),
    /** A write to a read-only slot or a read-only PFNMAP pte ({@code KVM_PFN_ERR_RO_FAULT}; x86 emulates). */
    RO_FAULT(KvmPfn.ERR_RO_FAULT),
    /** GUP was interrupted by a signal or asked to retry ({@code KVM_PFN_ERR_SIGPENDING}; x86 returns -EINTR). */
    SIGPENDING(KvmPfn.ERR_SIGPENDING),
    /** No-wait lookup of a page that would have to be faulted in ({@code KVM_PFN_ERR_NEEDS_IO}). */
    NEEDS_IO(KvmPfn.ERR_NEEDS_IO);

    /** KVM's encoding of this error as a {@code kvm_pfn_t}. */
    public final long code;

    PfnError(long code) {
        this.code = code;
    }

    /** The error of an encoded value, or null when {@code pfn} is not an error or NOSLOT. */
    public static PfnError of(long pfn) {
        if (pfn == KvmPfn.NOSLOT) return NOSLOT;
        if (!KvmPfn.isError(pfn)) return null;
        long k = pfn - KvmPfn.ERR_MASK;
        return k == 0 ? FAULT : k == 1 ? HWPOISON : k == 2 ? RO_FAULT : k == 3 ? SIGPENDING : k == 4 ? NEEDS_IO : FAULT;
    }
}
