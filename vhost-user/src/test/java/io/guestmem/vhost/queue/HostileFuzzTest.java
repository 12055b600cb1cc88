package io.guestmem.vhost.queue;

import static io.guestmem.vhost.queue.HostileGuest.A_SIZE;
import static io.guestmem.vhost.queue.HostileGuest.AVAIL;
import static io.guestmem.vhost.queue.HostileGuest.B;
import static io.guestmem.vhost.queue.HostileGuest.BUF;
import static io.guestmem.vhost.queue.HostileGuest.B_SIZE;
import static io.guestmem.vhost.queue.HostileGuest.DESC;
import static io.guestmem.vhost.queue.HostileGuest.END;
import static io.guestmem.vhost.queue.HostileGuest.F_INDIRECT;
import static io.guestmem.vhost.queue.HostileGuest.F_NEXT;
import static io.guestmem.vhost.queue.HostileGuest.F_WRITE;
import static io.guestmem.vhost.queue.HostileGuest.HOLE;
import static io.guestmem.vhost.queue.HostileGuest.INDIRECT;
import static io.guestmem.vhost.queue.HostileGuest.ROM;
import static io.guestmem.vhost.queue.HostileGuest.ROM_SIZE;
import static io.guestmem.vhost.queue.HostileGuest.USED;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.guestmem.access.GuestMemoryException;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Posix;
import io.guestmem.vhost.blk.RawImage;
import io.guestmem.vhost.blk.VirtioBlk;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * Seeded fuzzing of descriptor chains on real guest memory: random tables and available rings, a minority
 * well-formed virtio-blk requests, most of them hostile (mutations of those, or random descriptors), served
 * as the session serves them. After every chain the whole of guest memory (both regions and a ROM) is compared
 * with its state before, except the used ring and the device-writable buffers the driver's descriptors name
 * (a model's walk of the chain: every WRITE descriptor it reaches, every WRITE entry of an indirect table it
 * reaches); a refused write request must leave the image as it was. No exception but VirtqueueException may
 * leave the queue, none at all the device. The case count is {@code -Dguestmem.hostile.cases} (20000), the
 * seed {@code -Dguestmem.hostile.seed}.
 */
class HostileFuzzTest {
    static final long SEED = Long.getLong("guestmem.hostile.seed", 0x6057_11e5L); // another seed explores further
    static final int CASES = Integer.getInteger("guestmem.hostile.cases", 20_000);
    static final int SECTORS = 128;
    static final int[] TYPES = {VirtioBlk.T_IN, VirtioBlk.T_OUT, VirtioBlk.T_FLUSH, VirtioBlk.T_GET_ID, VirtioBlk.T_DISCARD,
            VirtioBlk.T_WRITE_ZEROES};
    static final long A_END = A_SIZE;

    Random rnd;
    HostileGuest g;
    int size;
    long chains, refused, served, chainErrors, brokenQueues, ringsRefused;
    final List<long[]> legit = new ArrayList<>();
    final Map<ChainError, Integer> errors = new EnumMap<>(ChainError.class);
    final Map<Integer, Integer> statuses = new TreeMap<>(); // status byte -> chains (-1: none written)
    byte[][] before, now;        // guest memory before and after a chain (swapped after each)
    ByteBuffer img0, img1;       // the image as it was, and now
    FileChannel disk;

    @Test
    void fuzzDescriptorChains() throws IOException {
        System.out.println("HostileFuzzTest: seed 0x" + Long.toHexString(SEED) + ", " + CASES + " cases");
        rnd = new Random(SEED);
        // the image is a memfd (its /proc/self/fd path opened as a file): thousands of flushes are no
        // fdatasync to a disk then, and write-zeroes takes the by-hand path (shmem has no ZERO_RANGE)
        int memfd = Memfd.create("hostile-fuzz-image", 0);
        Memfd.ftruncate(memfd, SECTORS * VirtioBlk.SECTOR);
        Path file = Path.of("/proc/self/fd/" + memfd);
        try (HostileGuest guest = new HostileGuest().withRom(); RawImage image = RawImage.open(file.toString());
             FileChannel ch = FileChannel.open(file)) {
            g = guest;
            disk = ch;
            g.fill(0, A_SIZE, 0xa5);
            g.fill(B, B_SIZE, 0xa5);
            VirtioBlk blk = new VirtioBlk(image, "fuzz", 16);
            before = g.snapshot();
            now = g.snapshot();
            img0 = ByteBuffer.allocate(SECTORS * VirtioBlk.SECTOR);
            img1 = ByteBuffer.allocate(img0.capacity());
            disk.read(img0, 0);
            for (int i = 0; i < CASES; i++) {
                try {
                    oneCase(blk);
                } catch (AssertionError | RuntimeException e) {
                    fail("seed 0x" + Long.toHexString(SEED) + " case " + i + ": " + e, e);
                }
            }
        } finally {
            Posix.close(memfd);
        }
        System.out.println("fuzz: " + chains + " chains, " + refused + " refused, " + served + " served (" + chainErrors
                + " chain errors, " + brokenQueues + " broken queues, " + ringsRefused + " rings refused)");
        System.out.println("fuzz: chain errors " + errors + "; statuses (-1: none) " + statuses);
        if (CASES >= 5000) { // a run scaled down for a slow machine need not reach every kind
            assertEquals(ChainError.values().length, errors.size(), "every kind of malformed chain was made: " + errors);
            for (int st : new int[] {-1, VirtioBlk.S_OK, VirtioBlk.S_IOERR, VirtioBlk.S_UNSUPP})
                assertTrue(statuses.containsKey(st), "some chains were answered " + st + ": " + statuses);
        }
        assertTrue(served > chains / 20 && refused > chains / 2, "the cases reach both sides: " + served + " served of " + chains);
    }

    void oneCase(VirtioBlk blk) throws IOException {
        size = rnd.nextInt(5) == 0 ? 1 << rnd.nextInt(2) : 4 << rnd.nextInt(3); // 1 and 2 hold few requests whole
        boolean eventIdx = rnd.nextBoolean(), indirect = rnd.nextInt(5) != 0;
        if (rnd.nextInt(40) == 0) {
            hostileRing(eventIdx, indirect);
            return;
        }
        int base = rnd.nextInt(0x10000);
        g.mem.writeU16(USED + 2, rnd.nextInt(0x10000));
        g.mem.writeU16(AVAIL, rnd.nextInt(2));
        if (eventIdx) g.mem.writeU16(AVAIL + 4 + 2L * size, rnd.nextInt(0x10000));
        SplitQueue q = new SplitQueue(g.mem, g.ring(size), eventIdx, indirect, base);
        int heads = 1 + rnd.nextInt(2);
        int next = 0;
        for (int h = 0; h < heads; h++) {
            int head = rnd.nextInt(size);
            next = request(head, next);
            g.mem.writeU16(AVAIL + 4 + 2L * ((base + h) & (size - 1)), rnd.nextInt(30) == 0 ? size + rnd.nextInt(0x10000 - size) : head);
        }
        int idx = base + heads;
        if (rnd.nextInt(30) == 0) idx = base + size + 1 + rnd.nextInt(0x10000 - size - 1); // more than the ring ahead
        g.mem.writeU16Release(AVAIL + 2, idx & 0xffff);

        g.snapshot(before);
        legit.clear();
        while (true) {
            DescriptorChain c;
            int entry = q.lastAvailIdx();
            int head = g.mem.readU16(AVAIL + 4 + 2L * (entry & (size - 1)));
            model(head, indirect);
            try {
                c = q.pop();
            } catch (VirtqueueException e) {
                chains++;
                refused++;
                brokenQueues++;
                assertTrue(q.broken() != null, "a queue that threw is broken");
                assertThrows(VirtqueueException.class, q::pop);
                break;
            }
            if (c == null) break;
            chains++;
            if (!c.ok()) {
                chainErrors++;
                errors.merge(c.error(), 1, Integer::sum);
            }
            long status = c.lastWritableByte();
            int written = blk.process(0, g.mem, c);
            int answer = written > 0 && readable(status) ? g.mem.readU8(status) : -1; // before push: it may lie in the used ring
            statuses.merge(answer, 1, Integer::sum);
            boolean ok = answer == VirtioBlk.S_OK;
            q.push(c.head(), written);
            img1.clear();
            disk.read(img1, 0);
            if (ok) {
                served++;
                assertTrue(c.ok(), "served a malformed chain " + c);
                ByteBuffer t = img0;
                img0 = img1;
                img1 = t;
            } else {
                refused++;
                assertArrayEquals(img0.array(), img1.array(), "a refused request changed the image: " + c);
            }
        }
        q.rearm();
        q.needsInterrupt();
        guard();
    }

    boolean readable(long gpa) {
        try {
            g.mem.readU8(gpa);
            return true;
        } catch (GuestMemoryException e) {
            return false;
        }
    }

    /** Compares guest memory with {@code before} outside the legit ranges and the used ring; then before = now. */
    void guard() {
        g.snapshot(now);
        List<long[]> slots = g.slots();
        legit.add(HostileGuest.usedRing(size));
        for (int i = 0; i < now.length; i++) {
            long base = slots.get(i)[0], end = base + now[i].length;
            for (long[] a : legit) {
                if (a[1] <= 0 || a[0] < 0 || a[0] + a[1] < a[0]) continue;
                long from = Math.max(a[0], base), to = Math.min(a[0] + a[1], end);
                if (from < to) System.arraycopy(now[i], (int) (from - base), before[i], (int) (from - base), (int) (to - from));
            }
            int m = Arrays.mismatch(before[i], now[i]);
            if (m >= 0) fail("a write outside the chain's writable buffers at gpa 0x" + Long.toHexString(base + m) + " (legit: "
                    + legit.stream().map(a -> Long.toHexString(a[0]) + "+" + a[1]).toList() + ")");
        }
        legit.clear();
        byte[][] t = before; // equal now: the next chain's before
        before = now;
        now = t;
    }

    /** The driver's view of what chain {@code head} lets the device write: a superset of what a correct walk names. */
    void model(int head, boolean indirect) {
        int idx = head;
        for (int steps = 0; steps <= size && idx < size; steps++) {
            long at = DESC + 16L * idx;
            long addr = g.mem.readU64(at), len = Integer.toUnsignedLong(g.mem.readU32(at + 8));
            int flags = g.mem.readU16(at + 12), next = g.mem.readU16(at + 14);
            if ((flags & F_INDIRECT) != 0) {
                for (long e = 0; e < Math.min(len / 16, 64); e++) {
                    try {
                        long ea = addr + 16 * e;
                        if ((g.mem.readU16(ea + 12) & F_WRITE) != 0) legit.add(new long[] {g.mem.readU64(ea), Integer.toUnsignedLong(g.mem.readU32(ea + 8))});
                    } catch (GuestMemoryException outside) {
                        break;
                    }
                }
            } else if ((flags & F_WRITE) != 0) legit.add(new long[] {addr, len});
            if ((flags & F_NEXT) == 0) break;
            idx = next;
        }
    }

    // ------------------------------------------------------------------------------- generation

    /** A buffer address: mostly in the buffer zones, sometimes hostile. */
    long addr(long len, boolean hostile) {
        if (hostile) {
            return switch (rnd.nextInt(10)) {
                case 0 -> END + rnd.nextInt(0x10000);
                case 1 -> HOLE + rnd.nextInt((int) (B - HOLE));
                case 2 -> A_END - 1 - rnd.nextInt(64);                 // straddling A's end
                case 3 -> END - 1 - rnd.nextInt(64);                   // straddling B's end
                case 4 -> -1L - rnd.nextInt(0x10000);                  // wrapping 2^64
                case 5 -> ROM + rnd.nextInt((int) ROM_SIZE);           // READONLY
                case 6 -> rnd.nextLong();
                case 7 -> 0x7fff_ffff_ffff_f000L + rnd.nextInt(0x1000);
                case 8 -> rnd.nextInt((int) BUF);                     // the rings and tables themselves
                default -> BUF + rnd.nextInt((int) (A_END - BUF));     // valid after all
            };
        }
        long room = Math.max(1, len);
        return rnd.nextBoolean() ? BUF + rnd.nextLong(Math.max(1, A_END - BUF - room)) : B + rnd.nextLong(Math.max(1, B_SIZE - room));
    }

    long len(long usual) {
        return switch (rnd.nextInt(8)) {
            case 0 -> 0;
            case 1 -> 1 + rnd.nextInt(17);
            case 2 -> 0xffff_ffffL - rnd.nextInt(4);
            case 3 -> 0x8000_0000L;
            case 4 -> rnd.nextInt(0x4000);
            default -> usual;
        };
    }

    /**
     * Writes a request for {@code head} into the table (entries from {@code head}, wrapping, or an indirect
     * table), well-formed or mutated; returns where the next request's indirect table may go.
     */
    int request(int head, int nextTable) {
        int type = rnd.nextInt(12) == 0 ? rnd.nextInt() : TYPES[rnd.nextInt(TYPES.length)];
        int kind = rnd.nextInt(10);  // 0-2 well-formed, 3 random descriptors, the rest mutated
        boolean hostile = kind >= 3;
        long sector = rnd.nextInt(8) == 0 && hostile ? rnd.nextLong() : rnd.nextInt(SECTORS + 2);
        int sectors = 1 + rnd.nextInt(4);
        long hdr = addr(16, false);
        List<long[]> bufs = new ArrayList<>();
        // the header, sometimes split in two
        if (rnd.nextInt(4) == 0) {
            bufs.add(new long[] {hdr, 8, 0});
            bufs.add(new long[] {hdr + 8, 8, 0});
        } else bufs.add(new long[] {hdr, 16, 0});
        long dataLen = (long) sectors * VirtioBlk.SECTOR;
        switch (type) {
            case VirtioBlk.T_IN -> split(bufs, dataLen, F_WRITE);
            case VirtioBlk.T_OUT -> split(bufs, dataLen, 0);
            case VirtioBlk.T_GET_ID -> bufs.add(new long[] {addr(20, false), 20, F_WRITE});
            case VirtioBlk.T_DISCARD, VirtioBlk.T_WRITE_ZEROES -> {
                long seg = addr(16, false);
                g.mem.writeU64(seg, rnd.nextInt(SECTORS));
                g.mem.writeU32(seg + 8, rnd.nextInt(16));
                g.mem.writeU32(seg + 12, type == VirtioBlk.T_WRITE_ZEROES ? rnd.nextInt(2) : 0);
                bufs.add(new long[] {seg, 16, 0});
            }
            default -> { }
        }
        bufs.add(new long[] {addr(1, false), 1, F_WRITE}); // the status
        g.mem.writeU32(hdr, type);
        g.mem.writeU32(hdr + 4, 0);
        g.mem.writeU64(hdr + 8, sector);
        if (kind == 3) for (long[] b : bufs) randomize(b);
        else if (hostile) for (int k = 0, n = 1 + rnd.nextInt(2); k < n; k++) mutate(bufs.get(rnd.nextInt(bufs.size())));

        boolean viaIndirect = bufs.size() > size || rnd.nextInt(3) == 0;
        if (!viaIndirect) {
            int[] order = new int[bufs.size()];
            for (int i = 0; i < order.length; i++) order[i] = (head + i) & (size - 1);
            for (int i = 0; i < bufs.size(); i++) {
                long[] b = bufs.get(i);
                boolean more = i + 1 < bufs.size();
                int flags = (int) b[2] | (more ? F_NEXT : 0);
                int next = more ? order[i + 1] : rnd.nextInt(0x10000);
                if (hostile && rnd.nextInt(6) == 0) next = rnd.nextInt(4) == 0 ? size + rnd.nextInt(0x10000 - size) : rnd.nextInt(size);
                if (hostile && rnd.nextInt(12) == 0) flags ^= 1 << rnd.nextInt(3);
                g.desc(DESC, order[i], b[0], b[1], flags, next);
            }
            return nextTable;
        }
        // an indirect table in the INDIRECT zone (or a hostile address)
        int entries = bufs.size();
        long table = INDIRECT + 16L * (nextTable % 64);
        long tableLen = 16L * entries;
        for (int i = 0; i < entries; i++) {
            long[] b = bufs.get(i);
            boolean more = i + 1 < entries;
            int flags = (int) b[2] | (more ? F_NEXT : 0);
            int next = more ? i + 1 : 0;
            if (hostile && rnd.nextInt(8) == 0) next = rnd.nextInt(entries + 2);
            if (hostile && rnd.nextInt(10) == 0) flags ^= 1 << rnd.nextInt(3); // NEXT, WRITE or a nested INDIRECT
            g.desc(table, i, b[0], b[1], flags, next);
        }
        int headFlags = F_INDIRECT;
        if (hostile) {
            switch (rnd.nextInt(8)) {
                case 0 -> tableLen = rnd.nextInt(4) == 0 ? 0 : tableLen + 1 + rnd.nextInt(15);   // not a multiple of 16
                case 1 -> tableLen = 16L * (size + 1 + rnd.nextInt(4));                           // longer than the queue
                case 2 -> table = addr(tableLen, true) & ~15L;                                     // outside RAM, mostly
                case 3 -> headFlags |= F_NEXT;
                case 4 -> headFlags |= F_WRITE;                                                    // ignored, per spec
                default -> { }
            }
        }
        g.desc(DESC, head, table, tableLen, headFlags, rnd.nextInt(size));
        return nextTable + entries;
    }

    /** Appends {@code len} bytes of data as 1-3 buffers with {@code flags}. */
    void split(List<long[]> bufs, long len, int flags) {
        int parts = 1 + rnd.nextInt(3);
        long left = len;
        for (int p = 0; p < parts && left > 0; p++) {
            long n = p == parts - 1 ? left : Math.min(left, VirtioBlk.SECTOR * (1 + rnd.nextInt(2)));
            bufs.add(new long[] {addr(n, false), n, flags});
            left -= n;
        }
    }

    void mutate(long[] b) {
        switch (rnd.nextInt(4)) {
            case 0 -> b[0] = addr(b[1], true);
            case 1 -> b[1] = len(b[1]);
            case 2 -> b[2] ^= F_WRITE;
            default -> {
                b[0] = addr(b[1], true);
                b[1] = len(b[1]);
            }
        }
    }

    void randomize(long[] b) {
        b[0] = addr(b[1], rnd.nextBoolean());
        b[1] = len(rnd.nextInt(2048));
        b[2] = rnd.nextInt(8) & ~F_NEXT;
    }

    /** Rings the queue may not take: misaligned, outside RAM, past a region's end. */
    void hostileRing(boolean eventIdx, boolean indirect) {
        long desc = DESC, avail = AVAIL, used = USED;
        switch (rnd.nextInt(6)) {
            case 0 -> desc += 1 + rnd.nextInt(15);
            case 1 -> avail += 1;
            case 2 -> used += 1 + rnd.nextInt(3);
            case 3 -> desc = (END + rnd.nextInt(0x10000)) & ~15L;
            case 4 -> used = (A_END - 4 - 8L * size) & ~3L; // avail_event past the region's end
            default -> avail = (HOLE + rnd.nextInt(0x1000)) & ~1L;
        }
        long d = desc, a = avail, u = used;
        chains++;
        refused++;
        ringsRefused++;
        assertThrows(VirtqueueException.class, () -> new SplitQueue(g.mem, new RingLayout(size, d, a, u), eventIdx, indirect, 0));
    }
}
