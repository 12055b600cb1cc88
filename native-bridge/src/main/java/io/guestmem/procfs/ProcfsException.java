package io.guestmem.procfs;

/** A procfs read that the kernel answered but whose answer cannot be used as asked (base of the typed errors). */
public class ProcfsException extends RuntimeException {
    public ProcfsException(String message) {
        super(message);
    }

    public ProcfsException(String message, Throwable cause) {
        super(message, cause);
    }
}
