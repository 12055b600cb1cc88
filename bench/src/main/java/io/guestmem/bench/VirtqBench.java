package io.guestmem.bench;

import io.guestmem.access.GuestMemory;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * A device walking a split virtqueue ({@link Virtq}) through {@link GuestMemory}, the shape of a virtio device
 * model's hot loop, on the reference layout. One round: the driver adds 256 to avail.idx (release); the device,
 * per chain, reads avail.idx (acquire), the ring entry, the chain's descriptors (16 bytes each: two u64 reads,
 * next < 256 checked, at most 256 per chain), reads each device-readable buffer into a 4 KiB device buffer and
 * writes each device-writable one from it (with {@code dirtyLog=on} the pages are marked dirty), then the used element (id,
 * len) and used.idx (release). ns per chain. Compare with the C limit's {@code virtq_walk} (gpa -> hva through
 * a flat table with one entry per MiB) and vm-memory's of the same run, on the same chains.
 *
 * <p>The parameter is {@code vqSlots}, not {@code slots}: the quick pass pins {@code slots} to 1 and 512, and
 * the walk needs a data slot besides the ring slot.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class VirtqBench {
    @Param({"8", "512"})
    public int vqSlots;

    @Param({"4k", "thp"})
    public String backing;

    /** The VMM's dirty log: {@code on} (every device write marked, as the C walk with a bitmap) or {@code off} (as vm-memory's {@code GuestMemoryMmap<()>} and the plain C walk). */
    @Param({"on", "off"})
    public String dirtyLog;

    private LayoutGuest guest;
    private GuestMemory mem;
    private final byte[] devBuf = new byte[4096];
    private int availIdx, lastAvail, usedIdx;
    private long expectedWritten;

    @Setup
    public void setup() {
        guest = new LayoutGuest(vqSlots, backing, dirtyLog.equals("off") ? io.guestmem.access.DirtyLogging.OFF : io.guestmem.access.DirtyLogging.ON);
        mem = guest.memory();
        Virtq.Chains c = Virtq.build(vqSlots);
        Virtq.install(mem, c);
        expectedWritten = c.writtenPerRound();
        java.util.Arrays.fill(devBuf, (byte) 0x5a);
        long w = round();
        if (w != expectedWritten || mem.readU16Acquire(Virtq.USED + 2) != Virtq.QSIZE)
            throw new IllegalStateException("virtq walk: wrote " + w + " bytes, expected " + expectedWritten
                    + "; used.idx " + mem.readU16Acquire(Virtq.USED + 2));
        System.out.printf("[guestmem-bench] virtq: %d slots, %d device-written bytes per round%n", vqSlots, w);
    }

    @TearDown
    public void tearDown() {
        guest.close();
    }

    /** One round of 256 chains; returns the bytes the device wrote (the used lens). */
    @Benchmark
    @OperationsPerInvocation(Virtq.QSIZE)
    public long round() {
        final GuestMemory m = mem;
        availIdx = (availIdx + Virtq.QSIZE) & 0xffff;
        m.writeU16Release(Virtq.AVAIL + 2, availIdx); // the driver
        long total = 0;
        int last = lastAvail, used = usedIdx;
        while (last != m.readU16Acquire(Virtq.AVAIL + 2)) {
            int head = m.readU16(Virtq.AVAIL + 4 + 2L * (last & (Virtq.QSIZE - 1)));
            int written = walk(m, head);
            long e = Virtq.USED + 4 + 8L * (used & (Virtq.QSIZE - 1));
            m.writeU32(e, head);
            m.writeU32(e + 4, written);
            last = (last + 1) & 0xffff;
            used = (used + 1) & 0xffff;
            m.writeU16Release(Virtq.USED + 2, used);
            total += written;
        }
        lastAvail = last;
        usedIdx = used;
        return total;
    }

    private int walk(GuestMemory m, int head) {
        int written = 0, d = head;
        for (int n = 0; ; n++) {
            if (d >= Virtq.QSIZE || n >= Virtq.QSIZE) throw new IllegalStateException("bad chain at head " + head);
            long g = Virtq.DESC + 16L * d;
            long addr = m.readU64(g), w2 = m.readU64(g + 8); // the 16-byte descriptor: addr, then len | flags | next
            int len = (int) w2, flags = (int) (w2 >>> 32) & 0xffff, next = (int) (w2 >>> 48);
            if (len > devBuf.length) throw new IllegalStateException("descriptor " + d + " longer than the device buffer");
            if ((flags & Virtq.F_WRITE) != 0) {
                m.write(addr, devBuf, 0, len);
                written += len;
            } else {
                m.read(addr, devBuf, 0, len);
            }
            if ((flags & Virtq.F_NEXT) == 0) return written;
            d = next;
        }
    }
}
