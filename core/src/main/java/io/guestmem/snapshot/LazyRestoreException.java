package io.guestmem.snapshot;

/**
 * A page a lazy restore could not bring in (its snapshot record is unreadable or corrupt): the access that
 * needed it fails with this instead of seeing wrong bytes, and the page stays poisoned for the kernel and the
 * guest.
 */
public final class LazyRestoreException extends RuntimeException {
    public LazyRestoreException(String message, Throwable cause) {
        super(message, cause);
    }
}
