package io.guestmem.mmu;

/**
 * Where a FOLL_GUEST lookup found a private guest_memfd page: the file and offset the kernel resolves a private
 * gfn through ({@code kvm_gmem_get_pfn}: the folio at the slot's guest_memfd offset, allocated if absent), not
 * the slot's hva. Read without any host page table entry, so the pfn itself is not observable
 * ({@link PfnObservability#GUEST_MEMFD_PRIVATE} says why).
 *
 * @param fd            the guest_memfd (or the memfd standing in for one)
 * @param offset        the page's offset in it
 * @param residentBefore what mincore on the file's host mapping said of the page before the lookup (page-cache
 *                      residency, no fault); {@link Residency#UNKNOWN} where the file has no host mapping to ask
 *                      through (a guest_memfd without MMAP)
 */
public record GuestMemfdResolution(int fd, long offset, Residency residentBefore) {

    /**
     * mincore's answer before the lookup. mincore counts a page-cache folio only when it is uptodate: a folio
     * that fallocate allocated but nothing has used yet is not (shmem leaves fallocated folios !uptodate until
     * first use; guest_memfd marks a folio uptodate when it prepares it for the guest), so
     * {@link #NOT_RESIDENT} means "absent, or allocated but never used", and whether this lookup allocated the
     * folio cannot be told from userspace.
     */
    public enum Residency {
        /** An uptodate folio was in the page cache: the page had contents before the lookup. */
        RESIDENT,
        /** No uptodate folio: absent (the lookup's fallocate allocated it) or allocated and never used. */
        NOT_RESIDENT,
        /** Not asked: no host mapping of the file to run mincore on. */
        UNKNOWN
    }
}
