package io.guestmem.cli;

/**
 * {@code demo --migrate} could not be carried out (no KVM, a snapshot, restore or migration that failed, a
 * destination process that did not answer): the message says which step and why; the command exits 1.
 */
final class MigrateDemoException extends RuntimeException {
    MigrateDemoException(String message) {
        super(message);
    }

    MigrateDemoException(String message, Throwable cause) {
        super(message, cause);
    }
}
