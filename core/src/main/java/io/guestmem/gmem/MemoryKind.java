package io.guestmem.gmem;

import io.guestmem.host.Backing;
import java.util.Optional;

/**
 * What kind of memory backs a host virtual address, as the kernel's own views show it (the VMA's name in
 * /proc/self/maps, its smaps VmFlags): what {@link MemoryClassifier} finds at any address, whoever mapped it.
 *
 * <p>Not the same concept as {@link Backing}, which says how this library created a region: many backings
 * look {@link #ORDINARY} to the kernel (anonymous, THP, hugetlb, memfd), a caller's fd may be anything, and a
 * memfd standing in for a guest_memfd is a memfd to the kernel. {@link #expectedFor} is the one mapping
 * from the one to the other.
 */
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
    UNMAPPED;

    /**
     * The kind the kernel shows for a mapped region created as {@code backing}; empty for {@link Backing#FD},
     * a caller's descriptor of which the library knows nothing.
     */
    public static Optional<MemoryKind> expectedFor(Backing backing) {
        return switch (backing) {
            case SECRET -> Optional.of(SECRET_MEM);
            case GUEST_MEMFD -> Optional.of(GUEST_MEMFD);
            case PFNMAP -> Optional.of(PFNMAP);
            case FD -> Optional.empty();
            case ANON, ANON_SHARED, THP, HUGETLB_2M, HUGETLB_1G, HUGETLB_OTHER, MEMFD, MEMFD_HUGETLB -> Optional.of(ORDINARY);
        };
    }
}
