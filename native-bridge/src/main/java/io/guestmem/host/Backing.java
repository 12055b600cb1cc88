package io.guestmem.host;

/** What backs a {@link HostRegion}: the kind of memory the kernel gives it. */
public enum Backing {
    /** Private anonymous memory (MAP_PRIVATE | MAP_ANONYMOUS), base pages. */
    ANON("anon"),
    /** Shared anonymous memory (shmem without a file name), base pages. */
    ANON_SHARED("anon-shared"),
    /** Private anonymous memory advised MADV_HUGEPAGE and PMD-aligned, so the kernel can use THPs. */
    THP("thp"),
    /** hugetlb pages of 2 MiB (MAP_HUGETLB), reserved at mmap time. */
    HUGETLB_2M("hugetlb-2M"),
    /** hugetlb pages of 1 GiB (MAP_HUGETLB), reserved at mmap time. */
    HUGETLB_1G("hugetlb-1G"),
    /** hugetlb pages of another size the kernel offers (arm64: 64K, 32M, ...). */
    HUGETLB_OTHER("hugetlb"),
    /** A memfd (shmem file), shareable by fd. */
    MEMFD("memfd"),
    /** A memfd on hugetlbfs (MFD_HUGETLB), shareable by fd. */
    MEMFD_HUGETLB("memfd-hugetlb"),
    /** memfd_secret: removed from the kernel's direct map; the kernel itself cannot read it (no GUP). */
    SECRET("secret"),
    /** A KVM guest_memfd passed in by the caller (mapped MAP_SHARED). */
    GUEST_MEMFD("guest_memfd"),
    /** Any other file descriptor passed in by the caller (mapped MAP_SHARED). */
    FD("fd"),
    /** A VM_PFNMAP | VM_IO range (a perf_event ring buffer): no struct pages behind it. */
    PFNMAP("pfnmap");

    private final String label;

    Backing(String label) {
        this.label = label;
    }

    /** The short name used in messages and the CLI, e.g. {@code hugetlb-2M}. */
    public String label() {
        return label;
    }

    /** The hugetlb backing for a page size. */
    public static Backing hugetlb(HugePageSize size) {
        if (size.bytes() == 2L << 20) return HUGETLB_2M;
        if (size.bytes() == 1L << 30) return HUGETLB_1G;
        return HUGETLB_OTHER;
    }

    public boolean isHugetlb() {
        return this == HUGETLB_2M || this == HUGETLB_1G || this == HUGETLB_OTHER || this == MEMFD_HUGETLB;
    }

    /**
     * Whether {@link RegionBuilder} maps this kind MAP_NORESERVE unless told otherwise
     * ({@link RegionBuilder#reserve}): the kinds of guest RAM whose pages the kernel can give out as they are
     * touched. Not hugetlb (reserved on purpose, so a short pool fails at creation instead of a SIGBUS on
     * a later fault), not a caller's {@link #FD} (it may be a hugetlbfs file, whose reservation MAP_NORESERVE
     * would drop) and not {@link #PFNMAP} (no RAM behind it).
     */
    public boolean noReserveByDefault() {
        return switch (this) {
            case ANON, ANON_SHARED, THP, MEMFD, SECRET, GUEST_MEMFD -> true;
            default -> false;
        };
    }

    @Override
    public String toString() {
        return label;
    }
}
