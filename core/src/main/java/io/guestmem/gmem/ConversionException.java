package io.guestmem.gmem;

import io.guestmem.KvmException;
import io.guestmem.sys.Errno;

/**
 * A shared/private conversion refused over a range, as {@code KVM_SET_MEMORY_ATTRIBUTES2} reports it:
 * {@code EAGAIN} and {@link #errorOffset()}, the guest_memfd offset of the first page that blocked it (still
 * mapped by a host mapping). Nothing in the range was changed.
 */
public final class ConversionException extends KvmException {
    private final long errorOffset;

    public ConversionException(Errno errno, String operation, long errorOffset, String reason) {
        super(errno, operation, reason);
        this.errorOffset = errorOffset;
    }

    /** The guest_memfd offset of the first page that blocked the conversion ({@code error_offset}). */
    public long errorOffset() {
        return errorOffset;
    }
}
