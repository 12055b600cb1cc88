package io.guestmem.cli;

/** A semantically bad argument found after parsing (e.g. a range whose end is before its start): exit 2. */
public final class UsageException extends RuntimeException {
    public UsageException(String message) {
        super(message);
    }
}
