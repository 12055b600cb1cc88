package io.guestmem.procfs;

import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * One VMA as {@code /proc/<pid>/smaps} describes it: the maps line, the page sizes, the memory counters
 * (converted from kB to bytes) and the VmFlags.
 *
 * @param mapping     the header line (range, permissions, offset, device, inode, name)
 * @param fields      every {@code Name: N kB} counter of the block, in bytes, in the kernel's order
 * @param thpEligible the {@code THPeligible} line (false when absent)
 * @param vmFlags     the VmFlags codes this library names
 * @param vmFlagCodes every VmFlags code as printed, including ones {@link VmFlag} does not know
 */
public record Vma(MapsEntry mapping, Map<String, Long> fields, boolean thpEligible, Set<VmFlag> vmFlags,
                  List<String> vmFlagCodes) {

    public long start() {
        return mapping.start();
    }

    public long end() {
        return mapping.end();
    }

    public long size() {
        return mapping.size();
    }

    public String perms() {
        return mapping.perms();
    }

    public long offset() {
        return mapping.offset();
    }

    public String dev() {
        return mapping.dev();
    }

    public long inode() {
        return mapping.inode();
    }

    /** Path or pseudo-name, empty for anonymous memory. */
    public String name() {
        return mapping.name();
    }

    public boolean contains(long address) {
        return mapping.contains(address);
    }

    /** A counter in bytes, -1 when the block has no such line (older kernels, other configs). */
    public long field(String name) {
        Long v = fields.get(name);
        return v == null ? -1 : v;
    }

    /** The page size the kernel uses for this VMA (2 MiB / 1 GiB for hugetlb). */
    public long kernelPageSize() {
        return field("KernelPageSize");
    }

    public long mmuPageSize() {
        return field("MMUPageSize");
    }

    public long rss() {
        return field("Rss");
    }

    public long anonymous() {
        return field("Anonymous");
    }

    public long anonHugePages() {
        return field("AnonHugePages");
    }

    public long shmemPmdMapped() {
        return field("ShmemPmdMapped");
    }

    public long filePmdMapped() {
        return field("FilePmdMapped");
    }

    public long sharedHugetlb() {
        return field("Shared_Hugetlb");
    }

    public long privateHugetlb() {
        return field("Private_Hugetlb");
    }

    public long locked() {
        return field("Locked");
    }

    public long swap() {
        return field("Swap");
    }

    public boolean has(VmFlag flag) {
        return vmFlags.contains(flag);
    }

    /** VM_PFNMAP: pages without (refcounted) struct pages; the kernel's page walks skip it. */
    public boolean pfnMap() {
        return has(VmFlag.PFNMAP);
    }

    public boolean hugetlb() {
        return has(VmFlag.HUGETLB);
    }
}
