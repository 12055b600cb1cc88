package io.guestmem.snapshot;

/** A handoff message or handler record that is not what the protocol says, with the byte offset where it went wrong. */
public final class UffdHandoffException extends RuntimeException {
    private final long offset;

    public UffdHandoffException(String what, long offset) {
        super("userfaultfd handoff at byte " + offset + ": " + what);
        this.offset = offset;
    }

    public long offset() {
        return offset;
    }
}
