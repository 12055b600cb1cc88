package io.guestmem.bench;

import io.guestmem.access.GuestMemory;
import io.guestmem.host.HostRegion;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.mmu.FollowPfnRequest;
import io.guestmem.mmu.FollowPfnResult;
import io.guestmem.snapshot.SnapshotWriter;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.vm.VmMemory;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * A 1 TiB guest of which 16 pages were ever written (no-reserve anonymous RAM, base pages): what each
 * operation costs when the slot is huge and the use is small. The targets: costs that follow what was
 * touched, not the slot's size.
 * <ul>
 *   <li>{@code gfnToHva}: a random gfn anywhere in the TiB.</li>
 *   <li>{@code readU64Touched}: a read of one of the written pages (rotating).</li>
 *   <li>{@code write16AndCollect}: one u64 into each of the 16 pages, then collectDirty of the slot: the
 *       harvest of a TiB slot's log (sparse: it reads the chunks written, not 2^28 bits).</li>
 *   <li>{@code followPfn}: follow_pfn of one written page (its pfn from pagemap: one pread).</li>
 *   <li>{@code snapshot}: a full snapshot of the guest to a file (ms): PAGEMAP_SCAN finds the 16 pages.</li>
 * </ul>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class SparseGuestBench {
    static final long TiB = 1L << 40, BASE = 4L << 30;
    static final int TOUCHED = 16;

    private HostRegion ram;
    private VmMemory vm;
    private GuestMemory mem;
    private MemslotSet set;
    private long[] gpas, gfns;
    private long npages, seed = 0x9E3779B97F4A7C15L;
    private int next;
    private int shift;
    private Path dir;

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        ram = HostRegion.anonymous(TiB).create();
        Mman.madvise(ram.address(), ram.size(), Mman.MADV_NOHUGEPAGE);
        vm = new VmMemory();
        mem = vm.memory();
        mem.addRam(0, BASE, ram);
        shift = mem.memslots().geometry().shift();
        npages = TiB >>> shift;
        gpas = new long[TOUCHED];
        gfns = new long[TOUCHED];
        for (int i = 0; i < TOUCHED; i++) {
            gpas[i] = BASE + (TiB / TOUCHED) * i + i * Posix.PAGE_SIZE;
            gfns[i] = gpas[i] >>> shift;
            mem.writeU64(gpas[i], i + 1);
        }
        mem.collectDirty(0);
        set = mem.memslots().current();
        dir = Files.createTempDirectory("guestmem-sparse-bench-");
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        vm.close();
        ram.close();
        try (var s = Files.list(dir)) {
            for (Path p : s.toList()) Files.delete(p);
        }
        Files.delete(dir);
    }

    private long nextRandom() {
        seed ^= seed << 13;
        seed ^= seed >>> 7;
        seed ^= seed << 17;
        return seed;
    }

    @Benchmark
    public long gfnToHva() {
        long gfn = (BASE >>> shift) + Long.remainderUnsigned(nextRandom(), npages);
        return set.gfnToHva(gfn);
    }

    @Benchmark
    public long readU64Touched() {
        next = (next + 1) & (TOUCHED - 1);
        return mem.readU64(gpas[next]);
    }

    @Benchmark
    public long write16AndCollect() {
        for (int i = 0; i < TOUCHED; i++) mem.writeU64(gpas[i], i);
        return mem.collectDirty(0).count();
    }

    @Benchmark
    public long followPfn() {
        next = (next + 1) & (TOUCHED - 1);
        FollowPfnResult r = vm.followPfn().follow(FollowPfnRequest.read(gfns[next]));
        vm.followPfn().releaseFaultinPage(r, false, false);
        return r.pfn();
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    public long snapshot() throws IOException {
        return SnapshotWriter.write(mem, dir.resolve("tib.snap")).bytesWritten();
    }
}
