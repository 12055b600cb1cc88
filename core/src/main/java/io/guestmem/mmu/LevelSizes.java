package io.guestmem.mmu;

import io.guestmem.host.HugePagePools;
import io.guestmem.host.HugePageSize;
import io.guestmem.memslot.PageGeometry;

/**
 * The byte sizes of the {@link MappingLevel}s for a base page size: a PMD block maps one page table's worth
 * of base pages ({@code pageSize / 8} entries), a PUD block one table of PMDs. x86-64 and arm64 with 4K
 * pages: 2M and 1G; arm64 16K: 32M and no PUD block; arm64 64K: 512M and no PUD block (stage 2 maps only
 * PAGE, PMD or PUD; see kernel-abi.md's arm64 table).
 *
 * @param geometry the base page
 * @param pmdSize  bytes of a PMD block
 * @param pudSize  bytes of a PUD block, 0 when the architecture has no PUD block for this page size
 */
public record LevelSizes(PageGeometry geometry, long pmdSize, long pudSize) {

    public LevelSizes {
        if (Long.bitCount(pmdSize) != 1 || pmdSize <= geometry.pageSize())
            throw new IllegalArgumentException("bad PMD size " + pmdSize + " for " + geometry);
        if (pudSize != 0 && (Long.bitCount(pudSize) != 1 || pudSize <= pmdSize))
            throw new IllegalArgumentException("bad PUD size " + pudSize);
    }

    /** The page-table geometry of a base page size (PUD blocks only with 4K pages, as on arm64 and x86). */
    public static LevelSizes of(PageGeometry g) {
        long entries = g.pageSize() / 8;
        long pmd = g.pageSize() * entries;
        long pud = g.pageSize() == 4096 ? pmd * entries : 0;
        return new LevelSizes(g, pmd, pud);
    }

    /**
     * The running kernel's sizes: the PMD size from {@code transparent_hugepage/hpage_pmd_size} (when THP is
     * built), the PUD size only when {@code /sys/kernel/mm/hugepages} offers a pool of that size (x86 without
     * gbpages has none), both checked against the page-table geometry of the base page.
     */
    public static LevelSizes host() {
        PageGeometry g = PageGeometry.host();
        LevelSizes computed = of(g);
        long thp = HugePagePools.thpSize();
        long pmd = thp > g.pageSize() ? thp : computed.pmdSize();
        long pud = 0;
        for (HugePageSize s : HugePagePools.sizes()) if (s.bytes() == computed.pudSize()) pud = s.bytes();
        return new LevelSizes(g, pmd, pud);
    }

    /** Bytes mapped by one entry of {@code level}. */
    public long size(MappingLevel level) {
        return switch (level) {
            case PAGE -> geometry.pageSize();
            case PMD -> pmdSize;
            case PUD -> pudSize == 0 ? pmdSize : pudSize;
        };
    }

    /** Base pages per entry of {@code level} ({@code KVM_PAGES_PER_HPAGE}). */
    public long pages(MappingLevel level) {
        return size(level) >>> geometry.shift();
    }

    /** The highest level this geometry has. */
    public MappingLevel maxLevel() {
        return pudSize != 0 ? MappingLevel.PUD : MappingLevel.PMD;
    }

    /**
     * The level a host page of {@code bytes} can be mapped at: a PUD block if at least a PUD, a PMD block if at
     * least a PMD (arm64's contiguous-PMD hugetlb sizes count as PMD), else base pages (contiguous-PTE sizes
     * such as arm64's 64K hugetlb are mapped with base pages, as arm64's {@code user_mem_abort} does).
     */
    public MappingLevel levelFor(long bytes) {
        if (pudSize != 0 && bytes >= pudSize) return MappingLevel.PUD;
        if (bytes >= pmdSize) return MappingLevel.PMD;
        return MappingLevel.PAGE;
    }
}
