/**
 * A vhost-user back-end over guestmem: the protocol a front-end (QEMU) drives over a unix socket, the guest's
 * RAM it hands over as file descriptors mapped into a {@link io.guestmem.access.GuestMemory}, split
 * virtqueues served from that memory, and a virtio-blk device over a raw image file. It depends on
 * {@code io.guestmem.core} and nothing in core depends on it; native access stays the bridge's
 * ({@code --enable-native-access=io.guestmem.bridge}).
 */
module io.guestmem.vhost {
    requires transitive io.guestmem.core;

    exports io.guestmem.vhost;
    exports io.guestmem.vhost.queue;
    exports io.guestmem.vhost.blk;
}
