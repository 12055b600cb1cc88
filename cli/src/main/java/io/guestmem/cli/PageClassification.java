package io.guestmem.cli;

import io.guestmem.gmem.MemoryKind;
import io.guestmem.host.Backing;
import io.guestmem.mmu.LevelSizes;
import io.guestmem.mmu.RefcountedPage;

import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.Vma;
import io.guestmem.procfs.VmFlag;
import io.guestmem.sys.Posix;
import java.nio.file.Path;

/**
 * What {@code inspect} concludes about a page or a VMA from the kernel's raw views (pagemap, kpageflags,
 * PAGEMAP_SCAN, smaps): whether KVM would hold a reference on the page, at what level it is mapped, and
 * what backs a VMA.
 *
 * <p>The refcounted decision and the PMD size are the library's ({@link RefcountedPage}, {@link LevelSizes});
 * what stays here is how {@code inspect} names levels and VMAs.
 */
public final class PageClassification {
    private PageClassification() {}

    /**
     * Whether KVM would hold a reference on the page behind {@code pfn}: the question
     * {@code kvm_pfn_to_refcounted_page} answers from a pfn alone (the rule of the v9 patch "KVM: mmu: Improve
     * handling of non-refcounted pfns" on the remapped path), as
     * {@link RefcountedPage} decides it from kpageflags — the library's one table, documented there.
     *
     * @return null when the pfn is unknown (not present, hidden by the kernel, or kpageflags unreadable)
     */
    public static Boolean refcounted(long pfn, long kpageflags, boolean kpageflagsKnown) {
        if (pfn == PagemapEntry.PFN_NONE || pfn == PagemapEntry.PFN_HIDDEN || pfn < 0 || !kpageflagsKnown) return null;
        return RefcountedPage.v9Rule(RefcountedPage.classify(kpageflags), RefcountedPage.Path.REMAPPED).refcounted();
    }

    /** The PMD mapping size, i.e. the THP size (from sysfs, through the library's {@link LevelSizes}). */
    public static final long PMD_SIZE = LevelSizes.host().pmdSize();

    /**
     * The size of the mapping that covers a page: the VMA's hugetlb page size, the PMD size when
     * PAGEMAP_SCAN says PAGE_IS_HUGE (a PMD-mapped THP or the huge zero page), else the base page. A page
     * that is not present answers the base page, never "none", as x86's {@code host_pfn_mapping_level} does
     * (see {@link io.guestmem.mmu.HostMappingLevel}).
     */
    public static long levelBytes(boolean present, boolean scanHuge, Vma vma) {
        if (!present) return Posix.PAGE_SIZE;
        if (vma.hugetlb() && vma.kernelPageSize() > 0) return vma.kernelPageSize();
        return scanHuge ? PMD_SIZE : Posix.PAGE_SIZE;
    }

    /** {@code 4K}, {@code 2M}, {@code 1G}, {@code 64K}, ... */
    public static String levelLabel(long bytes) {
        if (bytes >= 1L << 30 && bytes % (1L << 30) == 0) return (bytes >> 30) + "G";
        if (bytes >= 1L << 20 && bytes % (1L << 20) == 0) return (bytes >> 20) + "M";
        if (bytes >= 1L << 10 && bytes % (1L << 10) == 0) return (bytes >> 10) + "K";
        return bytes + "B";
    }

    /**
     * The backing of a VMA, named as {@link Backing#label()} names it where the VMA is one the library can create
     * ({@code pfnmap}, {@code hugetlb-2M}/{@code hugetlb-1G} (any hugetlb size: {@code hugetlb-64K}, ...),
     * {@code guest_memfd}, {@code memfd}, {@code secret}, {@code anon-shared}, {@code thp} (private anonymous
     * advised MADV_HUGEPAGE or holding THPs), {@code anon}); else {@code anon_inode}, {@code file}, or the
     * kernel's special names ({@code stack}, {@code heap}, {@code vdso}, {@code vvar}, {@code vsyscall}, ...).
     * What the kernel's view of the VMA says is {@link MemoryKind#of(Vma)}'s.
     */
    public static String backing(Vma vma) {
        String name = vma.name();
        MemoryKind kind = MemoryKind.of(vma);
        if (kind == MemoryKind.PFNMAP) return Backing.PFNMAP.label();
        if (vma.hugetlb()) return "hugetlb-" + levelLabel(vma.kernelPageSize() > 0 ? vma.kernelPageSize() : PMD_SIZE);
        if (kind == MemoryKind.GUEST_MEMFD) return Backing.GUEST_MEMFD.label();
        if (kind == MemoryKind.SECRET_MEM) return Backing.SECRET.label();
        if (name.startsWith("anon_inode:")) return "anon_inode";
        if (name.startsWith("/memfd:") || name.startsWith("memfd:")) return Backing.MEMFD.label();
        if (name.startsWith("[anon_shmem:")) return Backing.ANON_SHARED.label();
        boolean anonName = name.isEmpty() || name.startsWith("[anon:");
        if (name.startsWith("[") && !anonName) {
            String inner = name.substring(1, name.indexOf(']') > 0 ? name.indexOf(']') : name.length());
            return inner.startsWith("stack") ? "stack" : inner; // [stack], [heap], [vdso], [vvar], [vsyscall], [uprobes]
        }
        if (vma.mapping().shared() && (name.startsWith("/dev/zero") || name.startsWith("/SYSV") || anonName))
            return Backing.ANON_SHARED.label();
        if (anonName && !vma.mapping().hasFile()) {
            boolean thp = vma.anonHugePages() > 0 || vma.has(VmFlag.HUGEPAGE);
            return (thp ? Backing.THP : Backing.ANON).label();
        }
        return "file";
    }
}
