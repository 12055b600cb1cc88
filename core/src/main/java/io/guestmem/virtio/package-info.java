/**
 * Virtio structures as they lie in guest memory, as FFM layouts for {@link io.guestmem.access.GuestMemory}'s
 * structure access: {@link io.guestmem.virtio.VirtqDescriptor}, a split virtqueue's descriptor.
 */
package io.guestmem.virtio;
