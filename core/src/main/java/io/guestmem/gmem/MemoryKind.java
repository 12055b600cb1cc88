package io.guestmem.gmem;

/** What kind of memory backs a host virtual address, as the kernel's own views show it. */
public enum MemoryKind {
    /** memfd_secret: the VMA is {@code /secretmem (deleted)}; pages are absent from the kernel's direct map. */
    SECRET_MEM,
    /** A KVM guest_memfd mapping: the VMA is {@code anon_inode:[kvm-gmem]}. */
    GUEST_MEMFD,
    /** VM_PFNMAP / VM_IO: no struct pages (device memory, perf rings). */
    PFNMAP,
    /** Any other mapping (anonymous, shmem, files, hugetlb). */
    ORDINARY,
    /** No VMA covers the address. */
    UNMAPPED
}
