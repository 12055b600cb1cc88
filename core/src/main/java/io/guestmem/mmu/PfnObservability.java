package io.guestmem.mmu;

/** What the library could see of the pfn behind a successful lookup. */
public enum PfnObservability {
    /** The pfn is the kernel's, read from pagemap. */
    VISIBLE,
    /** The page is present but pagemap zeroed its pfn for this reader (no CAP_SYS_ADMIN). */
    HIDDEN,
    /** A VM_PFNMAP/VM_IO page: the kernel's page walk skips such VMAs, no userspace reader sees the pfn. */
    NOT_OBSERVABLE
}
