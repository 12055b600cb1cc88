package io.guestmem.vhost;

import io.guestmem.access.GuestMemory;
import io.guestmem.vhost.queue.DescriptorChain;

/**
 * The virtio device behind a vhost-user back-end: what it offers, its configuration space, and the requests
 * of its queues. The session owns the protocol, the memory and the rings; the device sees one walked chain
 * at a time and says how many bytes it wrote into the chain's buffers.
 */
public interface VhostUserDevice {
    /** The virtio feature bits the device offers (VERSION_1, ring and device features). */
    long features();

    /** How many queues the device has (GET_QUEUE_NUM). */
    int queues();

    /** {@code size} bytes of the configuration space from {@code offset} (zeros past its end). */
    byte[] config(int offset, int size);

    /**
     * Serves one request of queue {@code queue} from the chain's buffers in {@code mem}, a chain that may
     * carry an {@linkplain DescriptorChain#error() error} the device answers with its own error status.
     *
     * @return the bytes written into the chain's device-writable buffers (the used element's length)
     */
    int process(int queue, GuestMemory mem, DescriptorChain chain);
}
