package io.guestmem.lock;

/**
 * How a memslot is locked, as {@code KVM_ARM_LOCK_MEM_READ} / {@code KVM_ARM_LOCK_MEM_WRITE} of "KVM: arm64:
 * Implement the memslot lock/unlock functionality" (see {@link MemslotLock}):
 * READ pins the pages and maps them read-only at "stage 2" (a later guest write relaxes one entry, as dirty
 * logging does); READ_WRITE faults every page in for write and maps it writable.
 */
public enum LockMode {
    READ,
    READ_WRITE;

    public boolean writable() {
        return this == READ_WRITE;
    }
}
