package io.guestmem.mmu;

import io.guestmem.mmu.RefcountedPage.Refcount;
import io.guestmem.procfs.Vma;

/**
 * What the v9 rule's {@code kvm_pfn_to_refcounted_page} + {@code get_page_unless_zero} would answer for a pte of
 * a VM_PFNMAP/VM_IO mapping, whose pfn no userspace reader can see (the kernel's page walk skips such VMAs, so
 * pagemap and kpageflags cannot be asked). Known only where the mapping's owner says what it maps:
 *
 * <ul>
 * <li>a perf event's ring buffer ({@code anon_inode:[perf_event]}): "perf: map pages in advance" (Lorenzo
 *     Stoakes, 2024) maps the buffer's pages with {@code remap_pfn_range} in {@code map_range}, the pages
 *     {@code perf_mmap_to_page} returns, which the ring buffer allocated from the page allocator (or vmalloc)
 *     and holds: struct pages, not PG_reserved, refcount at least one while mapped. So
 *     {@code kvm_pfn_to_refcounted_page} returns the page and {@code get_page_unless_zero} succeeds:
 *     {@link Refcount#REFCOUNTED};</li>
 * <li>any other: {@link Refcount#NO_PAGE}, as the library assumed before it knew a mapping (most PFNMAP memory
 *     is MMIO without struct pages; low RAM that /dev/mem maps is PG_reserved, which the lookup also answers
 *     NULL for).</li>
 * </ul>
 */
public final class RemappedPages {
    private RemappedPages() {}

    /** The name /proc/self/maps gives a perf event's mmap. */
    public static final String PERF_EVENT = "anon_inode:[perf_event]";

    /** The v9 answer for a pte of {@code vma} (see the class comment). */
    public static Refcount v9Refcount(Vma vma) {
        return PERF_EVENT.equals(vma.name()) ? Refcount.REFCOUNTED : Refcount.NO_PAGE;
    }
}
