package io.guestmem.cli;

import java.util.List;

/** The JSON shapes of {@code guestmem inspect --json} (Jackson serializes the record components in order). */
public final class InspectReport {
    private InspectReport() {}

    /**
     * One VMA, clipped to the requested range. Page counts come from PAGEMAP_SCAN over the clipped range;
     * they are null when the kernel gives no page view of the VMA ({@code pagemapView} false, e.g. PFNMAP).
     *
     * @param start          first address (hex), clipped to the range
     * @param end            end address (hex, exclusive), clipped
     * @param vmaStart       the whole VMA's start (hex)
     * @param vmaEnd         the whole VMA's end (hex)
     * @param perms          {@code rwxp} as the kernel prints it
     * @param backing        anon, anon-shared, thp, hugetlb-2M, hugetlb-1G, memfd, guest_memfd, pfnmap, file, stack, heap, vdso, ...
     * @param name           the path or pseudo-name, empty for anonymous memory
     * @param sizeBytes      size of the clipped range
     * @param kernelPageSize the VMA's page size from smaps (hugetlb: the huge page size)
     * @param pagemapView    whether pagemap/PAGEMAP_SCAN describe the pages of this VMA
     * @param noView         why not, when {@code pagemapView} is false
     * @param presentPages   present base pages
     * @param swappedPages   swapped-out base pages
     * @param hugePages      present base pages mapped at a huge level (PMD-mapped THP, hugetlb), null when unknown
     * @param zeroPages      base pages mapping the (huge) zero page, null when unknown
     * @param pfnmap         VM_PFNMAP
     * @param locked         VM_LOCKED (mlock)
     * @param lockedBytes    smaps {@code Locked} for the whole VMA
     * @param vmFlags        the VmFlags codes as smaps prints them
     */
    public record Vma(String start, String end, String vmaStart, String vmaEnd, String perms, String backing, String name,
                      long sizeBytes, long kernelPageSize, boolean pagemapView, String noView, Long presentPages,
                      Long swappedPages, Long hugePages, Long zeroPages, boolean pfnmap, boolean locked, long lockedBytes,
                      List<String> vmFlags) {}

    /**
     * One base page.
     *
     * @param hva        its virtual address (hex)
     * @param present    pagemap's present bit
     * @param pfn        the pfn (hex); null when not present or when the kernel hides pfns from this reader
     * @param level      the mapping size covering it: 4K, 2M, 1G (a page not present answers the base size)
     * @param refcounted whether KVM would take a reference on it (see {@link PageClassification#refcounted}),
     *                   null when the pfn or its flags are unknown
     * @param flags      the kpageflags names of the pfn, null when the pfn or kpageflags is unreadable
     * @param pagemap    the other pagemap bits: exclusive, file, swapped, soft-dirty, uffd-wp, guard
     */
    public record Page(String hva, boolean present, String pfn, String level, Boolean refcounted, List<String> flags,
                       List<String> pagemap) {}
}
