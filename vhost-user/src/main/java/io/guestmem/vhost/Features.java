package io.guestmem.vhost;

/** The feature bits the protocol and the ring share between devices (virtio 1.x 6, vhost-user's own). */
public final class Features {
    private Features() {}

    /** VHOST_F_LOG_ALL: the front-end asks every write into guest memory to be logged (migration). */
    public static final long LOG_ALL = 1L << 26;
    /** VIRTIO_RING_F_INDIRECT_DESC */
    public static final long RING_INDIRECT_DESC = 1L << 28;
    /** VIRTIO_RING_F_EVENT_IDX */
    public static final long RING_EVENT_IDX = 1L << 29;
    /** VHOST_USER_F_PROTOCOL_FEATURES: GET/SET_PROTOCOL_FEATURES exist, rings start disabled. */
    public static final long PROTOCOL_FEATURES = 1L << 30;
    /** VIRTIO_F_VERSION_1 */
    public static final long VERSION_1 = 1L << 32;

    /** Protocol feature bits (VHOST_USER_PROTOCOL_F_*). */
    public static final long P_MQ = 1L << 0, P_LOG_SHMFD = 1L << 1, P_REPLY_ACK = 1L << 3, P_BACKEND_REQ = 1L << 5,
            P_CONFIG = 1L << 9, P_CONFIGURE_MEM_SLOTS = 1L << 15;
}
