package io.guestmem.vhost.queue;

import io.guestmem.sys.Errno;
import io.guestmem.sys.ErrnoException;

/**
 * A virtqueue the driver broke beyond one request: an available index more than the queue size ahead, a head
 * index past the table, a ring outside guest RAM or misaligned. There is no request to complete; the queue
 * stops (what virtio calls DEVICE_NEEDS_RESET) and the rest of the device goes on.
 */
public final class VirtqueueException extends ErrnoException {
    public VirtqueueException(Errno errno, String call, String detail) {
        super(errno.number, call, detail);
    }
}
