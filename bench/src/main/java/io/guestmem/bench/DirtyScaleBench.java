package io.guestmem.bench;

import io.guestmem.access.DirtyPages;
import io.guestmem.host.HostRegion;
import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.GuestProgram;
import io.guestmem.kvm.KvmDirtyLog;
import io.guestmem.kvm.KvmDirtyRings;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.SlotDirtyTracker;
import io.guestmem.kvm.UffdWpDirtyTracker;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.memslot.Memslot;
import io.guestmem.vm.VmMemory;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * Dirty tracking at scale: collect-and-rearm of one tracker over a 4 GiB guest (a 256 KiB boot slot at gpa 0
 * and a data slot of 4 GiB - 4 MiB at 4 MiB: the real guest runs flat 32-bit code on x86, which reaches 4 GiB)
 * with 1% of its pages dirty: 164 runs of 64 consecutive 4 KiB pages, one run every 25 MiB (6400 pages),
 * written by the guest (for {@code vmm}: by the VMM's own accessors) before each round, untimed. The round is
 * the tracker's collect (which re-arms it); a tracker that reports fewer pages than were written fails the
 * run. ns per dirty page (pages/s in latest.md). Compare with the C limit's {@code dirty_kvm_log} (the same
 * KVM_GET_DIRTY_LOG plus the bitmap scan), {@code dirty_kvm_clear} (manual protection: KVM_GET_DIRTY_LOG +
 * KVM_CLEAR_DIRTY_LOG) and {@code dirty_uffd_wp} (PAGEMAP_SCAN with PM_SCAN_WP_MATCHING), same layout and
 * pages, same run.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class DirtyScaleBench {
    static final long BOOT = 0x40000, CODE = 0x1000, DATA_GPA = 4L << 20, SIZE = (4L << 30) - DATA_GPA;
    static final long RUN_PAGES = 64, EVERY = 6400 * GuestCpu.GUEST_PAGE;
    static final int RUNS = (int) ((SIZE + EVERY - 1) / EVERY), DIRTY = (int) (RUNS * RUN_PAGES);

    @Param({"kvm-log", "kvm-ring", "uffd-wp", "vmm"})
    public String tracker;

    private final GuestCpu g = GuestCpu.current();
    private KvmVm vm;
    private VmMemory mem;
    private HostRegion boot, data;
    private Memslot slot;
    private Vcpu cpu;
    private SlotDirtyTracker t;
    private KvmDirtyRings rings;
    private long expected;
    private int pass;

    @Setup(Level.Trial)
    public void open() {
        boolean ring = tracker.equals("kvm-ring");
        vm = KvmVm.open(ring ? KvmVm.Options.defaults().withDirtyRing(1 << 20) : KvmVm.Options.defaults());
        mem = new VmMemory(vm);
        g.prepareVm(vm);
        boot = HostRegion.anonymous(BOOT).create();
        data = HostRegion.anonymous(SIZE).create();
        int flags = tracker.equals("uffd-wp") || tracker.equals("vmm") ? 0 : Memslot.LOG_DIRTY_PAGES;
        mem.memory().addRam(0, 0, boot);
        slot = mem.memory().addRam(1, DATA_GPA, data, 0, SIZE, flags);
        cpu = vm.createVcpu(0);
        long pageSize = mem.memslots().geometry().pageSize();
        // host pages touched: a 64-page guest run covers 64 * 4 KiB / pageSize host pages (at least one)
        expected = RUNS * Math.max(1, RUN_PAGES * GuestCpu.GUEST_PAGE / pageSize);
        switch (tracker) {
            case "kvm-log" -> t = KvmDirtyLog.of(vm, slot);
            case "kvm-ring" -> t = (rings = new KvmDirtyRings(vm)).forSlot(slot);
            case "uffd-wp" -> t = UffdWpDirtyTracker.start(slot);
            default -> {}
        }
        dirty();
        round(); // the first period starts clean
    }

    @TearDown(Level.Trial)
    public void close() {
        if (t != null) t.close();
        mem.close();
        data.close();
        boot.close();
        vm.close();
    }

    /** 1% of the data slot written (untimed): by the guest, or for {@code vmm} by the VMM's accessors. */
    @Setup(Level.Invocation)
    public void dirty() {
        pass++;
        for (int r = 0; r < RUNS; r++) {
            long start = DATA_GPA + r * EVERY;
            long n = Math.min(RUN_PAGES, (DATA_GPA + SIZE - start) / GuestCpu.GUEST_PAGE);
            if (tracker.equals("vmm")) {
                for (long p = 0; p < n; p++) mem.memory().writeU64(start + p * GuestCpu.GUEST_PAGE, pass);
                continue;
            }
            GuestProgram p = g.writeGfnToEveryPage(CODE, start, n, pass);
            for (GuestProgram.Chunk c : p.image()) mem.memory().write(c.gpa(), c.bytes());
            List<VcpuExit> exits = g.runToCompletion(cpu, p, 64);
            if (!exits.isEmpty()) throw new IllegalStateException("guest exits " + exits);
        }
    }

    @Benchmark
    @OperationsPerInvocation(DIRTY)
    public long round() {
        long[] gfns = tracker.equals("vmm") ? vmmPages() : t.collect();
        if (pass > 1 && gfns.length != expected)
            throw new IllegalStateException(tracker + " reported " + gfns.length + " of the " + expected + " pages written");
        return gfns.length;
    }

    private long[] vmmPages() {
        for (DirtyPages d : mem.memory().pagesToSend(s -> null)) if (d.slotId() == slot.id()) return d.gfns();
        return new long[0];
    }
}
