package io.guestmem.host;

/**
 * The running kernel gives this process no VM_PFNMAP mapping to back a {@link Backing#PFNMAP} region. The
 * message says which candidate was tried and what the kernel made of it (its smaps VmFlags, or the errno).
 */
public final class PfnmapUnavailableException extends UnsupportedOperationException {
    PfnmapUnavailableException(String reason, Throwable cause) {
        super(reason, cause);
    }
}
