package io.guestmem.mmu;

/** What the library could see of the pfn behind a successful lookup, and why not when it could not. */
public enum PfnObservability {
    /** The pfn is the kernel's, read from pagemap. */
    VISIBLE("read from pagemap"),
    /** The page is present but pagemap zeroed its pfn for this reader (no CAP_SYS_ADMIN). */
    HIDDEN("pagemap withholds pfns from a reader without CAP_SYS_ADMIN"),
    /** A VM_PFNMAP/VM_IO page: the kernel's page walk skips such VMAs, no userspace reader sees the pfn. */
    NOT_OBSERVABLE("a VM_PFNMAP/VM_IO mapping: the kernel's page walk skips it, so pagemap never shows its pfns"),
    /**
     * A private guest_memfd page resolved through its file and offset ({@link GuestMemfdResolution}): the folio
     * exists (the lookup allocated it if it was absent), but userspace reads a pfn only from a host page table
     * entry (pagemap), and a private page has none: making one is exactly what FOLL_GUEST must not do.
     */
    GUEST_MEMFD_PRIVATE("a private guest_memfd page: userspace can read a pfn only through a host mapping of the "
            + "page, and a private page is never host-mapped");

    private final String reason;

    PfnObservability(String reason) {
        this.reason = reason;
    }

    /** Where the pfn came from, or why it could not be seen. */
    public String reason() {
        return reason;
    }
}
