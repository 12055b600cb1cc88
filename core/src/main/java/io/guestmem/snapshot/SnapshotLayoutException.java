package io.guestmem.snapshot;

/**
 * A restore or an incremental snapshot whose layout does not match: the target memory's slots, or the base's,
 * are not the snapshot's, or the chain of snapshots is broken. Nothing was written when it is thrown.
 */
public final class SnapshotLayoutException extends IllegalArgumentException {
    public SnapshotLayoutException(String message) {
        super(message);
    }
}
