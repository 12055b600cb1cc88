package io.guestmem.lock;

/**
 * What one locked slot charges against RLIMIT_MEMLOCK: {@code npages} base pages, held as {@code pinKind}
 * says. For {@link PinKind#MLOCK}, {@code uncountedPages} are those not in the kernel's VmLck (hugetlb-backed,
 * or already locked by another slot or by the application before this lock); a {@link PinKind#LONGTERM_PIN}
 * slot's pages are all in the kernel's VmPin and {@code uncountedPages} is 0.
 */
public record SlotCharge(int addressSpace, int slotId, LockMode mode, PinKind pinKind, long npages, long uncountedPages) {}
