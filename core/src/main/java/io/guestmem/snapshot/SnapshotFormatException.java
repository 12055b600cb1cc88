package io.guestmem.snapshot;

import java.io.IOException;
import java.nio.file.Path;

/** A snapshot file that is not what it must be (truncated, corrupt, not a snapshot), with where it went wrong. */
public final class SnapshotFormatException extends IOException {
    private final Path file;
    private final long offset;

    public SnapshotFormatException(Path file, long offset, String what) {
        super("snapshot " + file + " at offset 0x" + Long.toHexString(offset) + ": " + what);
        this.file = file;
        this.offset = offset;
    }

    public Path file() {
        return file;
    }

    /** The file offset of the first byte found wrong (or where bytes were missing). */
    public long offset() {
        return offset;
    }
}
