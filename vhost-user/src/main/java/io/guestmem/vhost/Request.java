package io.guestmem.vhost;

/**
 * The front-end's requests this back-end serves (the vhost-user specification's "Front-end message types"),
 * each with the payload sizes it may have and the descriptors it carries. The parser refuses anything else
 * before a handler sees it: an unknown code, a payload outside {@code [minPayload, maxPayload]}, a
 * descriptor count other than the request's.
 */
public enum Request {
    GET_FEATURES(1, 0, 8, Fds.NONE),
    SET_FEATURES(2, 8, 8, Fds.NONE),
    SET_OWNER(3, 0, 8, Fds.NONE),
    RESET_OWNER(4, 0, 8, Fds.NONE),
    /** {@code u32 nregions, u32 padding, nregions x region}: one fd per region. */
    SET_MEM_TABLE(5, 8, 8 + Request.MAX_TABLE_REGIONS * MemoryRegion.BYTES, Fds.PER_REGION),
    /** {@code u64 mmap_size, u64 mmap_offset} and the log's shared-memory fd (LOG_SHMFD). */
    SET_LOG_BASE(6, 16, 16, Fds.ONE),
    SET_VRING_NUM(8, 8, 8, Fds.NONE),
    SET_VRING_ADDR(9, 40, 40, Fds.NONE),
    SET_VRING_BASE(10, 8, 8, Fds.NONE),
    GET_VRING_BASE(11, 8, 8, Fds.NONE),
    /** {@code u64}: the ring index in bits 0-7, bit 8 set when no fd comes with it. */
    SET_VRING_KICK(12, 8, 8, Fds.RING),
    SET_VRING_CALL(13, 8, 8, Fds.RING),
    SET_VRING_ERR(14, 8, 8, Fds.RING),
    GET_PROTOCOL_FEATURES(15, 0, 8, Fds.NONE),
    SET_PROTOCOL_FEATURES(16, 8, 8, Fds.NONE),
    GET_QUEUE_NUM(17, 0, 8, Fds.NONE),
    SET_VRING_ENABLE(18, 8, 8, Fds.NONE),
    SET_BACKEND_REQ_FD(21, 0, 8, Fds.ONE),
    /** {@code u32 offset, u32 size, u32 flags, u8 config[size]}. */
    GET_CONFIG(24, 12, 12 + Request.MAX_CONFIG, Fds.NONE),
    SET_CONFIG(25, 12, 12 + Request.MAX_CONFIG, Fds.NONE),
    GET_MAX_MEM_SLOTS(36, 0, 8, Fds.NONE),
    /** {@code u64 padding, region}: one fd. */
    ADD_MEM_REG(37, 8 + MemoryRegion.BYTES, 8 + MemoryRegion.BYTES, Fds.ONE),
    /** As ADD_MEM_REG; QEMU before 8.0 also sent the region's fd, which is closed unused. */
    REM_MEM_REG(38, 8 + MemoryRegion.BYTES, 8 + MemoryRegion.BYTES, Fds.AT_MOST_ONE);

    /** SET_MEM_TABLE's regions at most (VHOST_MEMORY_BASELINE_NREGIONS): also the most fds one message carries. */
    public static final int MAX_TABLE_REGIONS = 8;
    /** The largest device configuration space (virtio's config window is 256 bytes). */
    public static final int MAX_CONFIG = 256;

    /** How many descriptors a request carries. */
    public enum Fds {
        NONE, ONE, AT_MOST_ONE,
        /** one per region that the payload lists */
        PER_REGION,
        /** one unless the payload's bit 8 (VHOST_USER_VRING_NOFD_MASK) says none */
        RING
    }

    public final int code;
    final int minPayload, maxPayload;
    final Fds fds;

    Request(int code, int minPayload, int maxPayload, Fds fds) {
        this.code = code;
        this.minPayload = minPayload;
        this.maxPayload = maxPayload;
        this.fds = fds;
    }

    private static final Request[] BY_CODE = new Request[64];
    static {
        for (Request r : values()) BY_CODE[r.code] = r;
    }

    /** The request of a code, or null when this back-end does not serve it. */
    public static Request of(int code) {
        return code >= 0 && code < BY_CODE.length ? BY_CODE[code] : null;
    }
}
