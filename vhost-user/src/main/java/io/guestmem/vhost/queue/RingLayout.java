package io.guestmem.vhost.queue;

import io.guestmem.sys.Fmt;

/**
 * Where a split virtqueue lies in guest physical memory (virtio 1.x 2.7): the descriptor table (16 bytes a
 * descriptor, 16-aligned), the available ring ({@code flags, idx, ring[size], used_event}: 2-aligned) and the
 * used ring ({@code flags, idx, {id, len}[size], avail_event}: 4-aligned), for a power-of-two {@code size}.
 */
public record RingLayout(int size, long desc, long avail, long used) {
    public static final int MAX_SIZE = 32768;

    public RingLayout {
        if (size < 1 || size > MAX_SIZE || Integer.bitCount(size) != 1)
            throw new IllegalArgumentException("queue size " + size + " is not a power of two in [1, " + MAX_SIZE + "]");
    }

    public long descBytes() {
        return 16L * size;
    }

    public long availBytes() {
        return 6 + 2L * size;
    }

    public long usedBytes() {
        return 6 + 8L * size;
    }

    @Override
    public String toString() {
        return "ring of " + size + ": desc " + Fmt.hex(desc) + " avail " + Fmt.hex(avail) + " used " + Fmt.hex(used);
    }
}
