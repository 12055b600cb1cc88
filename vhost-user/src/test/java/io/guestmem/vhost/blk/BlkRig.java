package io.guestmem.vhost.blk;

import static io.guestmem.vhost.queue.HostileGuest.A_SIZE;
import static io.guestmem.vhost.queue.HostileGuest.B;
import static io.guestmem.vhost.queue.HostileGuest.B_SIZE;
import static io.guestmem.vhost.queue.HostileGuest.DESC;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.guestmem.vhost.queue.HostileGuest;
import io.guestmem.vhost.queue.SplitQueue;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;

/**
 * A virtio-blk device over a real image file, its queue in a {@link HostileGuest}: one request at a time,
 * answered with what the device wrote (status, used length) and what else changed (the guard).
 */
final class BlkRig implements AutoCloseable {
    static final int N = 16, SECTORS = 128;
    static final String SERIAL = "hostile-serial";

    final HostileGuest g;
    final Path file;
    final RawImage image;
    final VirtioBlk blk;
    final byte[] disk;
    final boolean eventIdx;
    SplitQueue q;
    int served;

    BlkRig(Path dir, boolean rom, boolean eventIdx) throws IOException {
        g = new HostileGuest();
        if (rom) g.withRom();
        disk = new byte[SECTORS * VirtioBlk.SECTOR];
        new Random(7).nextBytes(disk);
        file = dir.resolve("disk.img");
        Files.write(file, disk);
        image = RawImage.open(file.toString());
        blk = new VirtioBlk(image, SERIAL, N);
        this.eventIdx = eventIdx;
        pattern();
    }

    /** Guest memory back to a pattern no device writes (0xa5), a fresh queue. */
    void pattern() {
        g.fill(0, A_SIZE, 0xa5);
        g.fill(B, B_SIZE, 0xa5);
        q = g.queue(N, eventIdx, true);
        served = 0;
    }

    void header(long gpa, int type, long sector) {
        g.mem.writeU32(gpa, type);
        g.mem.writeU32(gpa + 4, 0);
        g.mem.writeU64(gpa + 8, sector);
    }

    /** What the device did with one request. */
    record Done(int usedLength, List<Long> changedElsewhere) {}

    /**
     * Offers the chain of {@code bufs} (at entry 0 of the table), serves it, and reports its used length and the
     * gpas changed outside {@code allowed} and the used ring.
     */
    Done request(long[][] allowed, long[]... bufs) {
        pattern();
        return again(allowed, bufs);
    }

    /** {@link #request} without resetting the memory (the guest's buffers as a test left them). */
    Done again(long[][] allowed, long[]... bufs) {
        int head = g.chain(DESC, 0, bufs);
        g.offer(N, head);
        byte[][] before = g.snapshot();
        HostileGuest.Served s = HostileGuest.serve(q, blk, g.mem);
        assertEquals(new HostileGuest.Served(1, null), s);
        assertEquals(served + 1, g.usedIdx());
        assertEquals(head, g.usedId(served, N));
        int len = g.usedLength(served++, N);
        long[][] all = java.util.Arrays.copyOf(allowed, allowed.length + 1);
        all[allowed.length] = HostileGuest.usedRing(N);
        return new Done(len, g.changesOutside(before, all));
    }

    byte[] imageNow() throws IOException {
        try (FileChannel ch = FileChannel.open(file)) {
            ByteBuffer b = ByteBuffer.allocate((int) ch.size());
            while (b.hasRemaining() && ch.read(b, b.position()) > 0) { }
            return b.array();
        }
    }

    static long[] buf(long gpa, long len, int flags) {
        return new long[] {gpa, len, flags};
    }

    static long[] range(long gpa, long len) {
        return new long[] {gpa, len};
    }

    @Override
    public void close() {
        try {
            image.close();
        } finally {
            g.close();
        }
    }
}
