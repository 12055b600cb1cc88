package io.guestmem.cli;

import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.Vma;
import io.guestmem.procfs.VmFlag;
import io.guestmem.sys.Posix;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * What {@code inspect} concludes about a page or a VMA from the kernel's raw views (pagemap, kpageflags,
 * PAGEMAP_SCAN, smaps): whether KVM would hold a reference on the page, at what level it is mapped, and
 * what backs a VMA.
 *
 * <p><b>Stand-in:</b> this is library logic kept in the CLI until core's follow_pfn helper
 * ({@code io.guestmem.mmu}) provides the classification; {@code inspect} should then switch to it. It is
 * deliberately small and table-driven so the two can be compared.
 */
public final class PageClassification {
    private PageClassification() {}

    /**
     * The seed's {@code kvm_pfn_to_refcounted_page} (virt/kvm/kvm_main.c before 6.13, which the v9
     * follow_pfn series builds on), as far as kpageflags can tell, in the function's order:
     * <ol>
     * <li>no struct page ({@code !pfn_valid}; kpageflags says NOPAGE) → not refcounted;</li>
     * <li>ZERO_PAGE → refcounted: the 4K zero page is PG_reserved but the function makes an explicit
     *     exception for it ("The ZERO_PAGE(s) is marked PG_reserved, but is refcounted"), and the huge zero
     *     page is an ordinary compound page;</li>
     * <li>PG_reserved (kpageflags bit 32, RESERVED) → not refcounted. ZONE_DEVICE pages are reserved too
     *     but refcounted for KVM; kpageflags cannot tell them apart, and none appear in pagemap here;</li>
     * <li>anything else → refcounted; for a compound tail (hugetlb, THP, large folio) the reference is
     *     taken on the head, which {@code get_page} does.</li>
     * </ol>
     * Since 6.13 KVM no longer asks this question of a pfn (the refcounted page comes from GUP, PFNMAP
     * memory never has one); for pages that pagemap shows, the answers agree.
     *
     * @return null when the pfn is unknown (not present, hidden by the kernel, or kpageflags unreadable)
     */
    public static Boolean refcounted(long pfn, long kpageflags, boolean kpageflagsKnown) {
        if (pfn == PagemapEntry.PFN_NONE || pfn == PagemapEntry.PFN_HIDDEN || pfn < 0 || !kpageflagsKnown) return null;
        if (KPageFlag.NOPAGE.in(kpageflags)) return false;
        if (KPageFlag.ZERO_PAGE.in(kpageflags)) return true;
        if (KPageFlag.RESERVED.in(kpageflags)) return false;
        return true;
    }

    /** The PMD mapping size, i.e. the THP size: sysfs's hpage_pmd_size, else what a page of 8-byte entries maps. */
    public static final long PMD_SIZE = pmdSize();

    /**
     * The size of the mapping that covers a page: the VMA's hugetlb page size, the PMD size when
     * PAGEMAP_SCAN says PAGE_IS_HUGE (a PMD-mapped THP or the huge zero page), else the base page. A page
     * that is not present answers the base page, never "none" (host_pfn_mapping_level, seed 002).
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
     * The backing of a VMA: {@code pfnmap}, {@code hugetlb-2M}/{@code hugetlb-1G}, {@code guest_memfd},
     * {@code memfd}, {@code secret}, {@code anon-shared}, {@code thp} (private anonymous advised
     * MADV_HUGEPAGE or holding THPs), {@code anon}, {@code file}, or the kernel's special names
     * ({@code stack}, {@code heap}, {@code vdso}, {@code vvar}, {@code vsyscall}, ...).
     */
    public static String backing(Vma vma) {
        String name = vma.name();
        if (vma.pfnMap()) return "pfnmap";
        if (vma.hugetlb()) return "hugetlb-" + levelLabel(vma.kernelPageSize() > 0 ? vma.kernelPageSize() : PMD_SIZE);
        if (name.equals("anon_inode:[kvm-gmem]")) return "guest_memfd";
        if (name.startsWith("anon_inode:")) return "anon_inode";
        if (name.startsWith("/memfd:") || name.startsWith("memfd:")) return "memfd";
        if (name.startsWith("/secretmem") || name.startsWith("[secretmem")) return "secret";
        if (name.startsWith("[anon_shmem:")) return "anon-shared";
        boolean anonName = name.isEmpty() || name.startsWith("[anon:");
        if (name.startsWith("[") && !anonName) {
            String inner = name.substring(1, name.indexOf(']') > 0 ? name.indexOf(']') : name.length());
            return inner.startsWith("stack") ? "stack" : inner; // [stack], [heap], [vdso], [vvar], [vsyscall], [uprobes]
        }
        if (vma.mapping().shared() && (name.startsWith("/dev/zero") || name.startsWith("/SYSV") || anonName))
            return "anon-shared";
        if (anonName && !vma.mapping().hasFile()) {
            boolean thp = vma.anonHugePages() > 0 || vma.has(VmFlag.HUGEPAGE);
            return thp ? "thp" : "anon";
        }
        return "file";
    }

    private static long pmdSize() {
        try {
            return Long.parseLong(Files.readString(Path.of("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")).trim());
        } catch (IOException | NumberFormatException e) {
            return Posix.PAGE_SIZE * (Posix.PAGE_SIZE / 8); // one page table of 8-byte entries
        }
    }
}
