package io.guestmem.gmem;

import io.guestmem.host.Backing;
import io.guestmem.procfs.Vma;
import io.guestmem.procfs.VmFlag;
import java.util.Optional;

/**
 * What kind of memory backs a host virtual address, as the kernel's own views show it (the VMA's name in
 * /proc/self/maps, its smaps VmFlags): what {@link MemoryClassifier} finds at any address, whoever mapped it.
 *
 * <p>Not the same concept as {@link Backing}, which says how this library created a region: many backings
 * look {@link #ORDINARY} to the kernel (anonymous, THP, hugetlb, memfd), a caller's fd may be anything, and a
 * memfd standing in for a guest_memfd is a memfd to the kernel. {@link #expectedFor} is the one mapping
 * from the one to the other; {@link #of(Vma)} / {@link #ofName} the one reading of a VMA (the classifier's
 * and {@code inspect}'s).
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

    /** The VMA name of a memfd_secret mapping starts so ({@code /secretmem (deleted)}; older kernels bracket it). */
    private static final String SECRETMEM_NAME = "/secretmem", SECRETMEM_NAME_BRACKETED = "[secretmem";
    /**
     * The VMA name of a mapping of a KVM guest_memfd: an anonymous inode's name, or, since "KVM: guest_memfd: Use
     * guest mem inodes instead of anonymous inodes" (https://lore.kernel.org/all/20250827175247.83322-7-shivankg@amd.com/)
     * gave guest_memfd its own pseudo filesystem, that file's path, {@code /[kvm-gmem] (deleted)} (seen on
     * Debian's 7.3 arm64 kernel).
     */
    private static final String GUEST_MEMFD_NAME = "anon_inode:[kvm-gmem]", GUEST_MEMFD_INODE_NAME = "/[kvm-gmem]";

    /**
     * What a VMA's name alone says: {@link #SECRET_MEM} or {@link #GUEST_MEMFD}; empty for any other name
     * (null included), which takes the VMA's flags to tell.
     */
    public static Optional<MemoryKind> ofName(String vmaName) {
        if (vmaName == null) return Optional.empty();
        if (vmaName.startsWith(SECRETMEM_NAME) || vmaName.startsWith(SECRETMEM_NAME_BRACKETED)) return Optional.of(SECRET_MEM);
        if (vmaName.equals(GUEST_MEMFD_NAME) || vmaName.equals(GUEST_MEMFD_INODE_NAME)
                || vmaName.startsWith(GUEST_MEMFD_INODE_NAME + " ")) return Optional.of(GUEST_MEMFD);
        return Optional.empty();
    }

    /** The kind of a mapped VMA: by its name ({@link #ofName}), else {@link #PFNMAP} for VM_PFNMAP/VM_IO, else ordinary. */
    public static MemoryKind of(Vma vma) {
        return ofName(vma.name()).orElse(vma.has(VmFlag.PFNMAP) || vma.has(VmFlag.IO) ? PFNMAP : ORDINARY);
    }

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
