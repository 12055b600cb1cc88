package io.guestmem.lock;

/**
 * What one locked slot charges against RLIMIT_MEMLOCK: {@code npages} base pages, of which
 * {@code uncountedPages} are not in the kernel's VmLck (hugetlb-backed, or already locked by another slot or
 * by the application before this lock).
 */
public record SlotCharge(int addressSpace, int slotId, LockMode mode, long npages, long uncountedPages) {}
