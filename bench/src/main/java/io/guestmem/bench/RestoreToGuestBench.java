package io.guestmem.bench;

import io.guestmem.host.HostRegion;
import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.GuestProgram;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
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
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

/**
 * From a snapshot of 64 MiB of guest RAM (a boot slot and a data slot, every data page holding data) to a real
 * KVM guest's first report: a new VM, the restore ({@code lazy}: {@link LazyRestore} without prefetch, the
 * guest's page arriving through KVM's fault; {@code eager}: {@link SnapshotRestore#eager}), the vCPU, the
 * program loaded, and the run until the guest reports the u64 it read from the data slot. Microseconds per
 * restore; what a lazy restore buys is this time, not the throughput.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
public class RestoreToGuestBench {
    static final long BOOT = 0x40000, DATA_GPA = 0x400000, SIZE = 64L << 20, CODE = 0x1000;

    @Param({"lazy", "eager"})
    public String restore;

    private Path dir, file;
    private Snapshot snapshot;
    private final List<AutoCloseable> open = new ArrayList<>();

    @Setup(Level.Trial)
    public void snapshot() throws IOException {
        dir = Files.createTempDirectory("guestmem-bench");
        file = dir.resolve("guest.snap");
        try (VmMemory vm = new VmMemory(); HostRegion boot = HostRegion.anonymous(BOOT).create();
             HostRegion ram = HostRegion.anonymous(SIZE).create()) {
            vm.memory().addRam(0, 0, boot);
            vm.memory().addRam(1, DATA_GPA, ram);
            MemorySegment s = ram.segment();
            for (long off = 0; off < SIZE; off += 4096) s.set(ValueLayout.JAVA_LONG, off, off | 1);
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
        for (int i = open.size() - 1; i >= 0; i--) open.get(i).close();
        open.clear();
    }

    @Benchmark
    public long toFirstReport() throws IOException {
        GuestCpu g = GuestCpu.current();
        KvmVm vm = KvmVm.open();
        open.add(vm);
        g.prepareVm(vm);
        VmMemory memory;
        if (restore.equals("lazy")) {
            LazyRestore lazy = LazyRestore.start(List.of(snapshot), vm, false);
            open.add(lazy);
            memory = lazy.memory();
        } else {
            RestoredMemory eager = SnapshotRestore.eager(List.of(snapshot), vm);
            open.add(eager);
            memory = eager.memory();
        }
        Vcpu cpu = vm.createVcpu(0);
        long gpa = DATA_GPA + SIZE / 2;
        GuestProgram p = g.readAndReport(CODE, gpa);
        for (GuestProgram.Chunk c : p.image()) memory.memory().write(c.gpa(), c.bytes());
        List<VcpuExit> exits = g.runToCompletion(cpu, p, 16);
        long seen = g.reported(exits).orElseThrow(() -> new IllegalStateException("no report in " + exits));
        if (seen != (((gpa - DATA_GPA) | 1) & 0xffffffffL)) throw new IllegalStateException("the guest read 0x" + Long.toHexString(seen));
        return seen;
    }
}
