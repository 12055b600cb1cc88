package io.guestmem.bench;

import io.guestmem.host.HostRegion;
import io.guestmem.snapshot.LazyRestore;
import io.guestmem.snapshot.RestoredMemory;
import io.guestmem.snapshot.Snapshot;
import io.guestmem.snapshot.SnapshotRestore;
import io.guestmem.snapshot.SnapshotWriter;
import io.guestmem.vm.VmMemory;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

/**
 * Restoring 64 MiB of anonymous guest RAM (every 4 KiB page holding data) from a snapshot, ns per 4 KiB page:
 * <ul>
 *   <li>{@code lazyFaults}: no prefetch; a raw load of every page in order, each missing block a kernel fault
 *       that {@link LazyRestore}'s handler thread answers (read, check, {@code UFFDIO_COPY} of 64 KiB). The
 *       limit is the C program's {@code uffd_copy_64k} (the same fault pattern with nothing but the ioctl).</li>
 *   <li>{@code lazyPrefetchComplete}: start with prefetch and wait until every block is in.</li>
 *   <li>{@code eager}: {@link SnapshotRestore#eager} into fresh regions.</li>
 * </ul>
 * Building the restore (the regions, the userfaultfd) for the lazy case is inside the timed call, as it is
 * for the eager one: both measure snapshot file to usable memory.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class LazyRestoreBench {
    static final long SIZE = 64L << 20, PAGE = 4096;
    static final int PAGES = (int) (SIZE / PAGE);

    private Path dir, file;
    private Snapshot snapshot;
    private AutoCloseable restored;

    @Setup(Level.Trial)
    public void snapshot() throws IOException {
        dir = Files.createTempDirectory("guestmem-bench");
        file = dir.resolve("ram.snap");
        try (VmMemory vm = new VmMemory(); HostRegion ram = HostRegion.anonymous(SIZE).create()) {
            vm.memory().addRam(0, 0, ram);
            MemorySegment s = ram.segment();
            for (long off = 0; off < SIZE; off += PAGE) s.set(ValueLayout.JAVA_LONG, off, off * 0x9E3779B97F4A7C15L | 1);
            SnapshotWriter.write(vm.memory(), file);
        }
        snapshot = Snapshot.open(file);
    }

    @TearDown(Level.Trial)
    public void remove() throws IOException {
        snapshot.close();
        Files.deleteIfExists(file);
        Files.deleteIfExists(dir);
    }

    @TearDown(Level.Invocation)
    public void release() throws Exception {
        if (restored != null) restored.close();
        restored = null;
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public long lazyFaults() throws IOException {
        LazyRestore lazy = LazyRestore.start(List.of(snapshot), null, false);
        restored = lazy;
        MemorySegment s = lazy.regions().get(0).segment();
        long sum = 0;
        for (long off = 0; off < SIZE; off += PAGE) sum += s.get(ValueLayout.JAVA_LONG, off);
        return sum;
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public boolean lazyPrefetchComplete() throws IOException, InterruptedException {
        LazyRestore lazy = LazyRestore.start(List.of(snapshot), null, true);
        restored = lazy;
        if (!lazy.awaitComplete(Duration.ofMinutes(2))) throw new IllegalStateException("prefetch did not finish: " + lazy.stats());
        return true;
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public Object eager() throws IOException {
        RestoredMemory r = SnapshotRestore.eager(List.of(snapshot), null);
        restored = r;
        return r;
    }
}
