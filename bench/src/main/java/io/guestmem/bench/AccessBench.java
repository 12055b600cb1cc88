package io.guestmem.bench;

import io.guestmem.access.GuestMemory;
import io.guestmem.memslot.MemslotSet;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * {@link GuestMemory} as a device model uses it, on the reference layout: {@code slots} slots of
 * 2 MiB with 1 MiB gaps, each backed by its own host region (like the C limit's one mmap per slot), every
 * page written first, at the reference's random gpas. Compare with vm-memory ({@code read_obj_u64},
 * {@code write_slice_4k}) and the C limit ({@code read_u64}, {@code write_4k}) of the same run.
 * <ul>
 *   <li>{@code readU64} (plain, one read per JMH invocation), {@code readU64Loop} (plain, a loop over the
 *       sequence: the shape of the C and Rust loops, which the targets compare it with),
 *       {@code readU64Volatile} (opaque), {@code readU64Atomic} (getAndAdd 0: a locked read-modify-write,
 *       which also marks the page dirty).</li>
 *   <li>{@code write4k}: a 4 KiB byte[] to a page-aligned gpa (copy plus dirty marking).</li>
 *   <li>{@code sliceWrite4k}: the same write through a tracked slice taken per write; {@code sliceWrite4kRaw}
 *       the copy into precomputed raw segments (the ratio: what the slice and its dirty marking cost).</li>
 *   <li>{@code pwritev3}: a virtio-style chain of 3 buffers (1 + 1 + 2 KiB, on three random pages, in three
 *       slots when there are 512) written to a memfd at offset 0 with one pwritev: the list checked and
 *       built ({@code buffers}), its iovecs, the syscall. {@code pwritev3Raw} is the same pwritev on the
 *       same host addresses, precomputed, through a reused iovec array: the kernel's share, for the ratio.</li>
 *   <li>{@code loadOnlyFloor}: one load at the precomputed hva, no lookup: the C loop's body through the
 *       same harness on the same memory.</li>
 *   <li>{@code gpaToSlot}: the memslot lookup alone (the current memslot set, then {@link MemslotSet#indexOf}
 *       of the gfn), without touching memory: what GuestMemory's checked path does first. Its fast path is
 *       a bucket table, one array load whatever the slot count.</li>
 * </ul>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class AccessBench {
    @Param({"1", "512"})
    public int slots;

    @Param({"4k", "thp"})
    public String backing;

    private LayoutGuest guest;
    private GuestMemory mem;
    private long[] gpas, pageGpas;
    private final byte[] buf = new byte[4096];
    private int next;

    @Setup
    public void setup() {
        guest = new LayoutGuest(slots, backing);
        mem = guest.memory();
        gpas = guest.gpas();
        pageGpas = new long[gpas.length];
        for (int i = 0; i < gpas.length; i++) pageGpas[i] = gpas[i] & ~4095L;
        java.util.Arrays.fill(buf, (byte) 7);
        MemslotSet set = guest.memslots().current(0);
        hvas = new long[gpas.length];
        for (int i = 0; i < gpas.length; i++) hvas[i] = set.gpaToHva(gpas[i]);
        pageHvas = new long[pageGpas.length];
        for (int i = 0; i < pageGpas.length; i++) pageHvas[i] = set.gpaToHva(pageGpas[i]);
        sink = io.guestmem.sys.Memfd.create("guestmem-bench-pwritev", 0);
        rawPages = new java.lang.foreign.MemorySegment[pageGpas.length]; // the same random pages as sliceWrite4k
        for (int i = 0; i < pageGpas.length; i++) rawPages[i] = mem.slice(pageGpas[i], 4096).rawSegment();
        rawIov = io.guestmem.sys.IovecArray.allocate(3); // confined: JMH runs a thread-scoped @Setup on its thread
    }

    @TearDown
    public void tearDown() {
        if (rawIov != null) rawIov.close();
        if (sink >= 0) io.guestmem.sys.Posix.close(sink);
        guest.close();
    }

    private int step() {
        int i = next;
        next = (i + 1) & Layout.MASK;
        return i;
    }

    @Benchmark
    public long readU64() {
        return mem.readU64(gpas[step()]);
    }

    @Benchmark
    public long readU64Volatile() {
        return mem.readU64Volatile(gpas[step()]);
    }

    @Benchmark
    public long readU64Atomic() {
        return mem.getAndAddU64(gpas[step()], 0);
    }

    @Benchmark
    public void write4k() {
        mem.write(pageGpas[step()], buf);
    }

    /**
     * A device's tracked write: a 4 KiB byte[] through a {@link io.guestmem.access.GuestSlice} taken for the
     * page (slice lookup, copy, dirty marking), the shape of a virtio device writing one descriptor's buffer.
     * {@code sliceWrite4kRaw} copies the same bytes to the same random pages through raw segments taken in setup:
     * no lookup, no marking; the ratio is what the slice lookup and the tracking cost.
     */
    @Benchmark
    public void sliceWrite4k() {
        mem.slice(pageGpas[step()], 4096).write(0, buf);
    }

    @Benchmark
    public void sliceWrite4kRaw() {
        java.lang.foreign.MemorySegment.copy(buf, 0, rawPages[step()], java.lang.foreign.ValueLayout.JAVA_BYTE, 0, 4096);
    }

    private java.lang.foreign.MemorySegment[] rawPages;

    private static final long[] CHAIN_LENS = {1024, 1024, 2048};
    private final long[] chainGpas = new long[3];
    private long[] pageHvas;
    private int sink = -1;
    private io.guestmem.sys.IovecArray rawIov;

    @Benchmark
    public long pwritev3() {
        for (int k = 0; k < 3; k++) chainGpas[k] = pageGpas[step()];
        return mem.pwritev(sink, 0, mem.buffers(chainGpas, CHAIN_LENS, false));
    }

    @Benchmark
    public long pwritev3Raw() {
        for (int k = 0; k < 3; k++) rawIov.set(k, pageHvas[step()], CHAIN_LENS[k]);
        return io.guestmem.sys.Uio.pwritev(sink, rawIov, 0);
    }

    /**
     * Diagnostic floor: one load at a precomputed hva (no lookup at all), the C limit's loop body through
     * JMH: shows what the harness itself allows.
     */
    @Benchmark
    public long loadOnlyFloor() {
        return EVERYTHING.get(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, hvas[step()]);
    }

    private long[] hvas;

    private static final java.lang.foreign.MemorySegment EVERYTHING =
            java.lang.foreign.MemorySegment.NULL.reinterpret(Long.MAX_VALUE);

    /**
     * {@code readU64} as the references measure it: a loop over the whole gpa sequence summing the reads,
     * like the C limit's and vm-memory's loops, so that their ratio compares like with like (no harness
     * between two reads). ns per read.
     */
    @Benchmark
    @OperationsPerInvocation(Layout.N)
    public long readU64Loop() {
        final long[] g = gpas;
        long acc = 0;
        for (int k = 0; k < g.length; k++) acc += mem.readU64(g[k]);
        return acc;
    }

    @Benchmark
    public int gpaToSlot() {
        MemslotSet set = guest.memslots().current(0);
        return set.indexOf(gpas[step()] >>> set.geometry().shift());
    }
}
