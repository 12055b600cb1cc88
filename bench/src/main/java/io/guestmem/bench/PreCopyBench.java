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
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

/**
 * One pre-copy round per tracker, ns per 4 KiB of dirty memory: a real KVM guest (for {@code vmm}: the VMM's
 * own accessors) has written every page of an 8 MiB slot (untimed); the round asks the tracker which pages were
 * written (and re-arms it), reads them through {@code GuestMemory} and writes them to a unix socket that another
 * thread drains: what a migration round costs besides the wire format. {@code none} sends the same pages with no
 * tracker (the reference in the same run: what the tracking adds is the difference). A tracker that reports
 * fewer pages than were written fails the run rather than measure less work.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class PreCopyBench {
    static final long BOOT = 0x40000, CODE = 0x1000, DATA_GPA = 0x400000, SIZE = 8L << 20, CHUNK = 64 << 10;
    static final int PER_4K = (int) (SIZE / 4096);

    @Param({"kvm-log", "kvm-ring", "uffd-wp", "vmm", "none"})
    public String tracker;

    private final GuestCpu g = GuestCpu.current();
    private KvmVm vm;
    private VmMemory mem;
    private HostRegion boot, data;
    private Memslot slot;
    private Vcpu cpu;
    private SlotDirtyTracker t;
    private KvmDirtyRings rings;
    private long pageSize, expected;
    private Path dir;
    private SocketChannel out;
    private Thread sink;
    private Arena arena;
    private MemorySegment chunk;
    private ByteBuffer chunkBuffer;
    private int pass;

    @Setup(Level.Trial)
    public void open() throws IOException {
        boolean ring = tracker.equals("kvm-ring");
        vm = KvmVm.open(ring ? KvmVm.Options.defaults().withDirtyRing(1 << 20) : KvmVm.Options.defaults());
        mem = new VmMemory(vm);
        g.prepareVm(vm);
        boot = HostRegion.anonymous(BOOT).create();
        data = HostRegion.anonymous(SIZE).create();
        int flags = tracker.equals("uffd-wp") || tracker.equals("none") ? 0 : Memslot.LOG_DIRTY_PAGES;
        mem.memory().addRam(0, 0, boot);
        slot = mem.memory().addRam(1, DATA_GPA, data, 0, SIZE, flags);
        cpu = vm.createVcpu(0);
        pageSize = mem.memslots().geometry().pageSize();
        expected = SIZE / pageSize;
        switch (tracker) {
            case "kvm-log" -> t = KvmDirtyLog.of(vm, slot);
            case "kvm-ring" -> t = (rings = new KvmDirtyRings(vm)).forSlot(slot);
            case "uffd-wp" -> t = UffdWpDirtyTracker.start(slot);
            default -> {}
        }
        dir = Files.createTempDirectory("guestmem-precopy");
        Path sock = dir.resolve("sink.sock");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(sock));
            out = SocketChannel.open(StandardProtocolFamily.UNIX);
            out.connect(UnixDomainSocketAddress.of(sock));
            SocketChannel in = server.accept();
            sink = Thread.ofPlatform().daemon().name("precopy-sink").start(() -> {
                ByteBuffer b = ByteBuffer.allocateDirect(1 << 20);
                try (in) {
                    while (in.read(b.clear()) >= 0) {
                        // drained
                    }
                } catch (IOException ignored) {
                    // the bench closed its end
                }
            });
        }
        Files.delete(sock);
        arena = Arena.ofConfined();
        chunk = arena.allocate(CHUNK, 4096);
        chunkBuffer = chunk.asByteBuffer();
        dirty();
        round(); // the first period starts clean
    }

    @TearDown(Level.Trial)
    public void close() throws Exception {
        out.close();
        sink.join(10_000);
        if (t != null) t.close();
        mem.close();
        data.close();
        boot.close();
        vm.close();
        arena.close();
        Files.deleteIfExists(dir);
    }

    /** Every page of the data slot written (untimed): by the guest, or for {@code vmm} by the VMM's accessors. */
    @Setup(Level.Invocation)
    public void dirty() {
        pass++;
        if (tracker.equals("vmm")) {
            for (long off = 0; off < SIZE; off += pageSize) mem.memory().writeU64(DATA_GPA + off, off + pass);
            return;
        }
        if (tracker.equals("none")) return;
        GuestProgram p = g.writeGfnToEveryPage(CODE, DATA_GPA, SIZE / GuestCpu.GUEST_PAGE, pass);
        for (GuestProgram.Chunk c : p.image()) mem.memory().write(c.gpa(), c.bytes());
        List<VcpuExit> exits = g.runToCompletion(cpu, p, 64);
        if (!exits.isEmpty()) throw new IllegalStateException("guest exits " + exits);
    }

    @Benchmark
    @OperationsPerInvocation(PER_4K)
    public long round() throws IOException {
        long[] gfns = switch (tracker) {
            case "none" -> all();
            case "vmm" -> vmmPages();
            default -> t.collect();
        };
        if (gfns.length != expected && pass > 1)
            throw new IllegalStateException(tracker + " reported " + gfns.length + " of the " + expected + " pages written");
        long sent = 0;
        for (int i = 0; i < gfns.length; ) {
            int j = i + 1;
            while (j < gfns.length && gfns[j] == gfns[j - 1] + 1 && (j - i) * pageSize < CHUNK) j++;
            long len = (j - i) * pageSize;
            mem.memory().read(gfns[i] * pageSize, chunk.asSlice(0, len));
            ByteBuffer b = chunkBuffer.clear().limit((int) len);
            while (b.hasRemaining()) sent += out.write(b);
            i = j;
        }
        return sent;
    }

    private long[] all() {
        long[] g = new long[(int) expected];
        for (int i = 0; i < g.length; i++) g[i] = slot.baseGfn() + i;
        return g;
    }

    private long[] vmmPages() {
        for (DirtyPages d : mem.memory().pagesToSend(s -> null)) if (d.slotId() == slot.id()) return d.gfns();
        return new long[0];
    }
}
