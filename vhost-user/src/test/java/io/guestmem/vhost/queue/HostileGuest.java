package io.guestmem.vhost.queue;

import io.guestmem.access.GuestMemory;
import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Posix;
import io.guestmem.vhost.FrontendMemory;
import io.guestmem.vhost.MemoryRegion;
import io.guestmem.vhost.VhostUserDevice;
import io.guestmem.virtio.VirtqDescriptor;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A driver's side of a split virtqueue in real guest memory, as a front-end hands it over: two memfd regions
 * mapped through {@link FrontendMemory} (A at gpa 0, B past a hole), and optionally a READONLY slot past B
 * (a ROM). Sizes are multiples of {@code U} (16 KiB or the page size if larger: 4, 16 and 64 KiB page kernels
 * alike), small so that comparing all of guest memory after every chain stays cheap. The ring lies at the
 * start of A; {@link #BUF} onwards in A and all of B are for buffers.
 *
 * <p>{@link #snapshot()} and {@link #changesOutside} are the guard: every byte of guest memory compared
 * before and after, except the ranges a test allows (the status bytes, the used ring, the buffers a chain
 * legitimately names).
 */
public final class HostileGuest implements AutoCloseable {
    public static final long U = Math.max(Posix.PAGE_SIZE, 16 * 1024);
    public static final long A = 0, A_SIZE = 8 * U, HOLE = A + A_SIZE, B = 16 * U, B_SIZE = 4 * U, END = B + B_SIZE;
    /** A READONLY slot (see {@link #withRom}) past B, after a second hole. */
    public static final long ROM = 24 * U, ROM_SIZE = U;
    /** The ring (queue size up to 256): table, available and used rings, then room for indirect tables. */
    public static final long DESC = 0, AVAIL = 0x1000, USED = 0x2000, INDIRECT = 0x3000, BUF = 0x8000;
    /** Where the front-end maps guest physical 0 in its own address space (the vring addresses it sends). */
    public static final long UADDR = 0x7f00_0000_0000L;
    public static final int F_NEXT = VirtqDescriptor.F_NEXT, F_WRITE = VirtqDescriptor.F_WRITE, F_INDIRECT = VirtqDescriptor.F_INDIRECT;

    private final FrontendMemory frontend = new FrontendMemory();
    public final GuestMemory mem = frontend.guestMemory();
    private HostRegion rom;
    private final List<long[]> ranges = new ArrayList<>(); // {gpa, size} of every slot, for the guard
    private final List<MemoryRegion> regions = new ArrayList<>();
    private final List<Integer> fds = new ArrayList<>(); // owned by the FrontendMemory, closed with it
    private int availIdx;

    public HostileGuest() {
        region(A, A_SIZE, "hostile-a");
        region(B, B_SIZE, "hostile-b");
    }

    private void region(long gpa, long size, String name) {
        int fd = Memfd.create(name, 0);
        Memfd.ftruncate(fd, size);
        MemoryRegion r = new MemoryRegion(gpa, size, UADDR + gpa, 0);
        frontend.add(r, fd, "test");
        ranges.add(new long[] {gpa, size});
        regions.add(r);
        fds.add(fd);
    }

    /** Regions A and B as a front-end's memory table would give them, and their memfds (to send: still ours). */
    public List<MemoryRegion> regions() {
        return regions;
    }

    public int fd(int region) {
        return fds.get(region);
    }

    /** Adds a READONLY slot at {@link #ROM} (filled with 0x5a before it is made read-only to the guest's devices). */
    public HostileGuest withRom() {
        rom = HostRegion.memfd(ROM_SIZE).create();
        rom.segment().fill((byte) 0x5a);
        mem.addRam(FrontendMemory.MAX_SLOTS - 1, ROM, rom, 0, ROM_SIZE, Memslot.READONLY);
        ranges.add(new long[] {ROM, ROM_SIZE});
        return this;
    }

    public RingLayout ring(int size) {
        return new RingLayout(size, DESC, AVAIL, USED);
    }

    /** A queue over {@link #ring}, the driver's available index where the queue starts (base 0). */
    public SplitQueue queue(int size, boolean eventIdx, boolean indirect) {
        availIdx = 0;
        mem.writeU16(AVAIL + 2, 0);
        mem.writeU16(USED + 2, 0);
        return new SplitQueue(mem, ring(size), eventIdx, indirect, 0);
    }

    /** Writes descriptor {@code i} of the table at {@code table}. */
    public void desc(long table, int i, long addr, long len, int flags, int next) {
        long at = table + 16L * i;
        mem.writeU64(at, addr);
        mem.writeU32(at + 8, (int) len);
        mem.writeU16(at + 12, flags);
        mem.writeU16(at + 14, next);
    }

    /**
     * Writes a chain of {@code bufs} ({@code {addr, len, flags}}, NEXT added between them) into the table at
     * {@code table} from entry {@code first}; returns {@code first}.
     */
    public int chain(long table, int first, long[]... bufs) {
        for (int i = 0; i < bufs.length; i++) {
            boolean more = i + 1 < bufs.length;
            desc(table, first + i, bufs[i][0], bufs[i][1], (int) bufs[i][2] | (more ? F_NEXT : 0), more ? first + i + 1 : 0);
        }
        return first;
    }

    /** Makes {@code heads} available in a ring of {@code size} (one publication of the index, release-ordered). */
    public void offer(int size, int... heads) {
        for (int h : heads) mem.writeU16(AVAIL + 4 + 2L * (availIdx++ & (size - 1)), h);
        mem.writeU16Release(AVAIL + 2, availIdx & 0xffff);
    }

    /** Sets the available index as a driver that lies would. */
    public void availIdx(int idx) {
        availIdx = idx;
        mem.writeU16Release(AVAIL + 2, idx & 0xffff);
    }

    public int usedIdx() {
        return mem.readU16(USED + 2);
    }

    public int usedId(int entry, int size) {
        return mem.readU32(USED + 4 + 8L * (entry & (size - 1)));
    }

    /** The used ring's {@code len} of entry {@code entry}. */
    public int usedLength(int entry, int size) {
        return mem.readU32(USED + 8 + 8L * (entry & (size - 1)));
    }

    /** The used ring with its avail_event: what the device writes on every request. */
    public static long[] usedRing(int size) {
        return new long[] {USED, 6 + 8L * size};
    }

    public void fill(long gpa, long len, int value) {
        mem.fill(gpa, len, (byte) value);
    }

    /** Every byte of every slot. */
    public byte[][] snapshot() {
        byte[][] s = new byte[ranges.size()][];
        for (int i = 0; i < s.length; i++) s[i] = new byte[(int) ranges.get(i)[1]];
        return snapshot(s);
    }

    /** Every byte of every slot, into arrays {@link #snapshot()} made. */
    public byte[][] snapshot(byte[][] into) {
        for (int i = 0; i < into.length; i++) mem.read(ranges.get(i)[0], into[i]);
        return into;
    }

    /** The slots' {@code {gpa, size}}, in the order of a snapshot's arrays. */
    public List<long[]> slots() {
        return ranges;
    }

    /**
     * The gpas (at most a few) of bytes changed since {@code before} outside {@code allowed} ({@code {gpa, len}}
     * pairs, which may lie anywhere): empty when the device wrote nowhere else.
     */
    public List<Long> changesOutside(byte[][] before, long[]... allowed) {
        byte[][] now = snapshot();
        List<Long> bad = new ArrayList<>();
        for (int i = 0; i < now.length; i++) {
            long base = ranges.get(i)[0];
            for (long[] a : allowed) {
                long from = Math.max(a[0], base), to = Math.min(a[0] + a[1], base + now[i].length);
                if (a[1] > 0 && a[0] + a[1] > a[0] && from < to)
                    System.arraycopy(now[i], (int) (from - base), before[i], (int) (from - base), (int) (to - from));
            }
            int at = 0, len = now[i].length;
            while (bad.size() < 8 && at < len) {
                int m = Arrays.mismatch(before[i], at, len, now[i], at, len);
                if (m < 0) break;
                bad.add(base + at + m);
                at += m + 1;
            }
        }
        return bad;
    }

    /** What serving a ring ended in: the requests served, or the reason the queue broke. */
    public record Served(int requests, String broken) {}

    /** Serves the ring as the session does (pop, process, push until empty, rearm, interrupt check). */
    public static Served serve(SplitQueue q, VhostUserDevice device, GuestMemory mem) {
        int n = 0;
        try {
            do {
                DescriptorChain c;
                while ((c = q.pop()) != null) {
                    q.push(c.head(), device.process(0, mem, c));
                    n++;
                }
            } while (q.rearm());
            q.needsInterrupt();
            return new Served(n, null);
        } catch (VirtqueueException e) {
            return new Served(n, e.getMessage());
        }
    }

    @Override
    public void close() {
        try {
            frontend.close();
        } finally {
            if (rom != null) rom.close();
        }
    }
}
