package io.guestmem.vhost.queue;

/**
 * Why a descriptor chain the driver made cannot be served. The request is still completed (its device gets
 * the chain with this error and answers with its own error status, virtio-blk's IOERR) so that a bad chain
 * costs the driver that request and nothing else.
 */
public enum ChainError {
    /** A {@code next} (or an indirect table's) index past the end of its table. */
    NEXT_OUT_OF_RANGE,
    /** More descriptors than the queue has: the chain loops (the driver may not make a longer one). */
    TOO_LONG,
    /** A descriptor (in the ring's table or an indirect one) that is not in guest RAM. */
    DESCRIPTOR_OUTSIDE_MEMORY,
    /** An indirect descriptor inside an indirect table, or one when INDIRECT_DESC was not negotiated. */
    INDIRECT_NOT_ALLOWED,
    /** An indirect descriptor with NEXT set (the specification forbids both). */
    INDIRECT_WITH_NEXT,
    /** An indirect table whose length is 0, not a multiple of 16, or more entries than the queue size. */
    INDIRECT_BAD_LENGTH,
    /** A device-readable buffer after a device-writable one. */
    READABLE_AFTER_WRITABLE,
    /** A buffer whose address plus length wraps, or a chain of more than 2^32 - 1 bytes either way. */
    LENGTH_OVERFLOW
}
