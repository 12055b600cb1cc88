package io.guestmem.bench;

import io.guestmem.host.HostRegion;
import io.guestmem.lock.LockMode;
import io.guestmem.lock.MemslotLock;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.mmu.DirtyLog;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * {@link MemslotLock}: lock then unlock one 256 MiB slot (READ_WRITE), ms per lock+unlock pair, on 4K pages
 * and THP. The region is prefaulted once, so this is the cost of the lock protocol itself (populate calls
 * that find pages present, the long-term pin and unpin through io_uring buffer registration, one batched
 * pagemap read of the pfns, accounting), not of
 * first-touch allocation.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class LockBench {
    static final long SIZE = 256L << 20;

    @Param({"4k", "thp"})
    public String backing;

    private HostRegion region;
    private MemslotLock lock;

    @Setup
    public void setup() {
        region = Regions.populated(backing, SIZE);
        Memslots memslots = new Memslots();
        MmuNotifier notifier = new MmuNotifier(memslots);
        memslots.setMemslot(0, 0, 0, 0, SIZE, region.address());
        lock = new MemslotLock(notifier, DirtyLog.NONE);
    }

    @TearDown
    public void tearDown() {
        lock.close();
        region.close();
    }

    @Benchmark
    public void lockUnlock256MiB() {
        lock.lockMemslot(0, LockMode.READ_WRITE);
        lock.unlockMemslot(0);
    }
}
