package io.guestmem.bench;

import io.guestmem.access.GuestMemory;
import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * One memslot change (target: under 50 µs at KVM's 32764 slots, where KVM's "KVM: Scalable memslots implementation" rework makes a change O(log n))
 * on the {@link Layout} of 2 MiB slots with 1 MiB gaps, built one change at a time:
 * <ul>
 *   <li>{@code createDelete}: slot {@code slots/2} is missing from the set; create it in its hole, delete it
 *       again (2 changes per op: ns/op is per change).</li>
 *   <li>{@code moveAndBack}: move slot {@code slots/2} to a free position above every slot and back (2 MOVEs
 *       per op).</li>
 *   <li>{@code buildAll}: a single shot, {@code slots} creates from an empty set (target: all 32764 in under
 *       1 s); s/op is the whole build.</li>
 * </ul>
 * {@code follower=guestMemory} adds a {@link GuestMemory} that follows every change (its slot table, views,
 * dirty logs and fast-path buckets); every slot is then backed by the same 2 MiB region (hvas may alias, as
 * KVM allows), so that 32764 slots need no 64 GiB of address space. {@code follower=none} is the memslot writer
 * alone, with hvas that are never dereferenced.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class MemslotUpdateBench {
    @Param({"512", "4096", "32764"})
    public int slots;

    @Param({"none", "guestMemory"})
    public String follower;

    private Memslots memslots;
    private GuestMemory memory;
    private HostRegion region;
    private int middle;
    private long hvaBase;

    @Setup(Level.Trial)
    public void setup() {
        boolean gm = follower.equals("guestMemory");
        if (gm) region = HostRegion.anonymous(Layout.SLOT).create();
        hvaBase = gm ? region.address() : 0x7f00_0000_0000L;
        memslots = newWriter();
        if (gm) {
            memory = new GuestMemory(memslots);
            memory.register(region);
        }
        middle = slots / 2;
        for (int i = 0; i < slots; i++) if (i != middle) create(memslots, i);
    }

    private static Memslots newWriter() {
        return new Memslots(Memslots.Config.of(PageGeometry.host()));
    }

    private void create(Memslots ms, int id) {
        long hva = memory != null || region != null ? hvaBase : hvaBase + id * Layout.STRIDE;
        ms.setMemslot(0, id, 0, Layout.slotGpa(id), Layout.SLOT, hva);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        if (memory != null) memory.close();
        if (region != null) region.close();
    }

    /** Create the missing middle slot in its hole, then delete it: ns per change. */
    @Benchmark
    @OperationsPerInvocation(2)
    public long createDelete() {
        create(memslots, middle);
        memslots.deleteMemslot(0, middle);
        return memslots.generation();
    }

    /** Move slot {@code middle - 1} above every slot and back: ns per change. */
    @Benchmark
    @OperationsPerInvocation(2)
    public long moveAndBack() {
        int id = Math.max(0, middle - 1);
        long hva = region != null ? hvaBase : hvaBase + id * Layout.STRIDE;
        memslots.setMemslot(0, id, 0, Layout.slotGpa(slots + 1), Layout.SLOT, hva);
        memslots.setMemslot(0, id, 0, Layout.slotGpa(id), Layout.SLOT, hva);
        return memslots.generation();
    }

    /** All {@code slots} slots created one change at a time into an empty set (and its follower): one shot. */
    @Benchmark
    @BenchmarkMode(Mode.SingleShotTime)
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    @Warmup(iterations = 2)
    @Measurement(iterations = 3)
    public long buildAll() {
        Memslots ms = newWriter();
        GuestMemory gm = null;
        if (region != null) {
            gm = new GuestMemory(ms);
            gm.register(region);
        }
        for (int i = 0; i < slots; i++) create(ms, i);
        long g = ms.generation();
        if (gm != null) gm.close();
        return g;
    }
}
