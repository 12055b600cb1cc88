package io.guestmem.bench;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.FollowPfn;
import io.guestmem.mmu.FollowPfnBatch;
import io.guestmem.mmu.KvmPfn;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.mmu.PfnCache;
import io.guestmem.procfs.Pagemap;
import io.guestmem.mmu.FollowPfnCollaborators;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * gfn → pfn over one 1 GiB slot backed by a prefaulted 4K region:
 * <ul>
 *   <li>{@code cachedHit}: {@link PfnCache#check()} and {@link PfnCache#pfn()} of an activated cache, the
 *       hit path a vCPU takes for a page it uses all the time (target: under 10 ns, 0 B/op).</li>
 *   <li>{@code coldPerPage}: {@link FollowPfnBatch#translate} of the whole slot for a read fault (the
 *       pages are present, so this is pagemap reads plus the per-page decision), ns per page; compare with
 *       {@link PagemapBench#batchPread} (the raw pread) and {@code naivePerPage}.</li>
 *   <li>{@code naivePerPage}: one 8-byte pagemap pread per page, what a translation without batching
 *       costs, over a window of 4096 pages per invocation.</li>
 * </ul>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class FollowPfnBench {
    static final long SIZE = Regions.GIB;
    static final int PAGES = (int) (SIZE / 4096);
    static final int WINDOW = 4096;
    /** Pages per pagemap pread in the batch path: the same chunk as {@code Pagemap}'s own reads. */
    static final int CHUNK = 131072;

    private HostRegion region;
    private MmuNotifier notifier;
    private FollowPfn fp;
    private FollowPfnBatch batch;
    private PfnCache cache;
    private Pagemap pagemap;
    private Arena arena;
    private MemorySegment one;
    private long[] out;
    private long cursor;

    @Setup
    public void setup() {
        if (io.guestmem.sys.Posix.PAGE_SIZE != 4096) throw new IllegalStateException("the per-page counts assume 4 KiB pages");
        region = Regions.populated("4k", SIZE);
        Memslots memslots = new Memslots();
        notifier = new MmuNotifier(memslots);
        memslots.setMemslot(0, 0, 0, 0, SIZE, region.address());
        fp = new FollowPfn(notifier, FollowPfnCollaborators.standalone());
        batch = new FollowPfnBatch(fp, CHUNK);
        cache = new PfnCache(fp, 0);
        var err = cache.activate(12345L * 4096, 8);
        if (err != null || !cache.check()) throw new IllegalStateException("PfnCache did not activate: " + err);
        out = new long[PAGES];
        batch.translate(0, 0, PAGES, false, out, 0);
        for (int i = 0; i < PAGES; i++) {
            if (!KvmPfn.isRealPfn(out[i])) throw new IllegalStateException("gfn " + i + " translated to " + out[i]);
        }
        pagemap = Pagemap.openSelf();
        arena = Arena.ofConfined();
        one = arena.allocate(8, 8);
    }

    @TearDown
    public void tearDown() {
        cache.close();
        fp.close();
        pagemap.close();
        arena.close();
        region.close();
    }

    @Benchmark
    public long cachedHit() {
        if (!cache.check()) throw new IllegalStateException("the cache was invalidated during the bench");
        return cache.pfn();
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public long coldPerPage() {
        batch.translate(0, 0, PAGES, false, out, 0);
        return out[PAGES - 1];
    }

    @Benchmark
    @OperationsPerInvocation(WINDOW)
    public long naivePerPage() {
        long base = region.address(), c = cursor, acc = 0;
        for (int i = 0; i < WINDOW; i++) {
            pagemap.read(base + ((c + i) % PAGES) * 4096, 1, one);
            acc += one.get(ValueLayout.JAVA_LONG, 0);
        }
        cursor = (c + WINDOW) % PAGES;
        return acc;
    }
}
