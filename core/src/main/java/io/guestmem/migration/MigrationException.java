package io.guestmem.migration;

import java.io.IOException;

/**
 * A migration ended before it was complete: the peer closed the stream, or what it sent is not this format
 * (with the stream offset of the bad byte, counted from the first header byte).
 */
public final class MigrationException extends IOException {
    private final long offset;

    public MigrationException(long offset, String why) {
        super("migration stream at offset " + offset + ": " + why);
        this.offset = offset;
    }

    public MigrationException(long offset, String why, Throwable cause) {
        super("migration stream at offset " + offset + ": " + why, cause);
        this.offset = offset;
    }

    /** Where in the stream it went wrong (-1 where no offset applies). */
    public long offset() {
        return offset;
    }
}
