package io.guestmem.gmem;

import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.PagemapEntry;
import java.util.Set;

/**
 * The classifier's answer for one host virtual address ({@link MemoryClassifier#classify}): the kind, the VMA
 * name from /proc/self/maps, the pagemap entry, the kpageflags of the pfn (empty when the page is not present
 * or the pfn is hidden), whether the kernel's get_user_pages refuses the page (probed for secret memory
 * only, with MADV_POPULATE_READ, which walks pages the way GUP does), and a sentence saying why KVM can or
 * cannot map it.
 */
public record MemoryClass(long hva, MemoryKind kind, String vmaName, PagemapEntry pagemap, Set<KPageFlag> kpageflags,
                          boolean gupRefused, int gupErrno, String why) {
    public MemoryClass {
        kpageflags = Set.copyOf(kpageflags);
    }
}
