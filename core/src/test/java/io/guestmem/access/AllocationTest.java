package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The hot paths allocate nothing once compiled: readU64, writeU64, write of 4 KiB, the gpa -> slot step,
 * opaque, acquire/release and atomic accessors, a slice's typed and bulk accessors, a pin around a read,
 * dirty collection into a caller's array. 64 slots of 64 KiB with 64 KiB gaps; random gpas. The least
 * allocation over several rounds is taken (a loaded machine may still be compiling).
 */
class AllocationTest {
    private static final com.sun.management.ThreadMXBean MX =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    @Test
    void hotPathsAllocateNothing() {
        final long slotSize = 64 << 10;
        List<HostRegion> regions = new ArrayList<>();
        Memslots slots = new Memslots();
        GuestMemory gm = new GuestMemory(slots);
        try {
            for (int s = 0; s < 64; s++) {
                HostRegion r = HostRegion.anonymous(slotSize).create();
                regions.add(r);
                gm.addRam(s, 2 * slotSize * s, r);
            }
            long[] gpas = new long[4096];
            java.util.Random rnd = new java.util.Random(7);
            for (int k = 0; k < gpas.length; k++) gpas[k] = 2 * slotSize * rnd.nextInt(64) + (rnd.nextInt((int) slotSize - 4096) & ~7);
            byte[] buf = new byte[4096];
            long[] into = new long[DirtyBitmap.wordsFor(slotSize / 4096)];
            GuestSlice slice = gm.slice(2 * slotSize * 5, slotSize); // made once, used in the loop
            long least = Long.MAX_VALUE;
            long sink = 0;
            for (int round = 0; round < 30; round++) {
                long before = MX.getCurrentThreadAllocatedBytes();
                for (int it = 0; it < 20_000; it++) {
                    long g = gpas[it & 4095];
                    sink += gm.readU64(g);
                    gm.writeU64(g, it);
                    gm.write(g & ~4095L, buf, 0, 4096);
                    gm.read(g & ~4095L, buf, 0, 4096);
                    sink += gm.slotIndexOf(g);
                    sink += gm.readU32Volatile(g);
                    gm.writeU64Volatile(g, sink);
                    sink += gm.getAndAddU64(g, 1);
                    if (gm.compareAndSetU32(g, 0, 1)) sink++;
                    sink += gm.readU64Acquire(g);
                    gm.writeU32Release(g, (int) sink);
                    long o = g & (slotSize - 4096);
                    sink += slice.readU64(o + 1);
                    slice.writeU64(o + 3, sink);
                    sink += slice.readU32Acquire(o);
                    slice.writeU64Release(o + 8, sink);
                    slice.write(o, buf, 0, 64);
                    slice.read(o, buf, 0, 64);
                }
                gm.dirtyBitmap(3).getAndClear(into);
                least = Math.min(least, MX.getCurrentThreadAllocatedBytes() - before);
                if (least == 0) break;
            }
            assertEquals(0, least, "bytes allocated by 20000 rounds of the hot paths (sink " + sink + ")");
            // A pin around a walk, in its own loop as a device's walk is its own method: the thread's Pin
            // object is reused, so no pin allocates, whatever the JIT inlines (an object per pin was
            // scalar-replaced on x86-64 and not on arm64).
            least = Long.MAX_VALUE;
            for (int round = 0; round < 30; round++) {
                long before = MX.getCurrentThreadAllocatedBytes();
                for (int it = 0; it < 20_000; it++) {
                    long g = gpas[it & 4095];
                    try (GuestMemory.Pin p = gm.pin()) {
                        sink += gm.readU64(g);
                        sink += gm.readU16Acquire(g & ~1L);
                    }
                }
                least = Math.min(least, MX.getCurrentThreadAllocatedBytes() - before);
                if (least == 0) break;
            }
            assertEquals(0, least, "bytes allocated by 20000 pinned walks (sink " + sink + ")");
        } finally {
            gm.close();
            regions.forEach(HostRegion::close);
        }
    }
}
