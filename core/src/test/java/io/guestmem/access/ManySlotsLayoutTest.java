package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.sys.Posix;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * GuestMemory following thousands of memslot changes (creates, moves, deletes) over thousands of slots, each
 * table made from the previous one in O(chunk) or, when a change does not fit its buckets (a slot aligned more
 * finely, a slot far away), built whole: typed accesses, bulk reads across adjacent slots, holes and dirty logs
 * checked against a model after every batch, while a reader keeps reading slots that never change and must
 * always see their bytes.
 */
class ManySlotsLayoutTest {
    static final long PAGE = Posix.PAGE_SIZE, SLOT = 4 * PAGE;
    static final int SLOTS = 3000, STABLE = 16, POSITIONS = 8000;

    @Test
    void thousandsOfChangesOverThousandsOfSlots() throws Exception {
        Random rnd = new Random(4242);
        Memslots memslots = new Memslots();
        try (HostRegion region = HostRegion.anonymous(SLOTS * SLOT).create()) {
            GuestMemory gm = new GuestMemory(memslots);
            gm.register(region);
            // slot i is always backed by region bytes [i * SLOT, (i + 1) * SLOT): a move keeps the hva
            for (int i = 0; i < SLOTS; i++) region.segment().set(ValueLayout.JAVA_LONG, i * SLOT, 0x5100_0000L + i);
            TreeMap<Long, Integer> model = new TreeMap<>(); // base gpa -> id
            Map<Integer, Long> where = new java.util.HashMap<>();
            long[] at = new long[POSITIONS];
            // stable slots at the bottom, the others spread above them
            for (int i = 0; i < SLOTS; i++) {
                long gpa = (i < STABLE ? i : STABLE + 2L * (i - STABLE)) * SLOT;
                create(memslots, region, model, where, i, gpa);
            }
            AtomicBoolean stop = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            AtomicLong reads = new AtomicLong();
            Thread reader = new Thread(() -> {
                Random r = new Random(1);
                try {
                    while (!stop.get()) {
                        int i = r.nextInt(STABLE);
                        assertEquals(0x5100_0000L + i, gm.readU64(i * SLOT), "stable slot " + i);
                        reads.incrementAndGet();
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }, "stable-reader");
            reader.start();
            try {
                for (int step = 0; step < 6000 && failure.get() == null; step++) {
                    int id = STABLE + rnd.nextInt(SLOTS - STABLE);
                    Long base = where.get(id);
                    int kind = rnd.nextInt(10);
                    if (base != null && kind < 3) {
                        memslots.deleteMemslot(0, id);
                        model.remove(base);
                        where.remove(id);
                    } else {
                        long gpa = (STABLE + rnd.nextInt(POSITIONS - STABLE)) * SLOT;
                        if (kind == 9) gpa += PAGE;                   // finer than the buckets: a whole build
                        if (rnd.nextInt(500) == 0) gpa += 1L << 36;   // far above: the buckets must grow
                        try {
                            if (base == null) create(memslots, region, model, where, id, gpa);
                            else {
                                memslots.setMemslot(0, id, 0, gpa, SLOT, region.address() + id * SLOT);
                                model.remove(base);
                                model.put(gpa, id);
                                where.put(id, gpa);
                            }
                        } catch (KvmException e) {
                            assertTrue(overlaps(model, gpa, id), "refused without an overlap: " + e);
                        }
                    }
                    if (step % 500 == 0) check(gm, region, model, rnd);
                }
            } finally {
                stop.set(true);
                reader.join(60_000);
            }
            if (failure.get() != null) throw new AssertionError(failure.get());
            check(gm, region, model, rnd);
            assertTrue(reads.get() > 0);
            gm.close();
        }
    }

    static void create(Memslots ms, HostRegion region, TreeMap<Long, Integer> model, Map<Integer, Long> where, int id, long gpa) {
        ms.setMemslot(0, id, 0, gpa, SLOT, region.address() + id * SLOT);
        model.put(gpa, id);
        where.put(id, gpa);
    }

    static boolean overlaps(TreeMap<Long, Integer> model, long gpa, int id) {
        for (Map.Entry<Long, Integer> e : model.subMap(gpa - SLOT + 1, true, gpa + SLOT, false).entrySet()) {
            if (e.getValue() != id) return true;
        }
        return false;
    }

    /** Every slot's first and last u64, writes with their dirty bits, a read across adjacent slots, and holes. */
    static void check(GuestMemory gm, HostRegion region, TreeMap<Long, Integer> model, Random rnd) {
        assertEquals(model.size(), gm.memslotSet().size());
        for (Map.Entry<Long, Integer> e : model.entrySet()) {
            long gpa = e.getKey();
            int id = e.getValue();
            assertEquals(0x5100_0000L + id, gm.readU64(gpa), "first u64 of slot " + id + " at " + Long.toHexString(gpa));
            long v = rnd.nextLong();
            gm.writeU64(gpa + SLOT - 8, v);
            assertEquals(v, region.segment().get(ValueLayout.JAVA_LONG, (id + 1) * SLOT - 8), "last u64 of slot " + id);
            assertEquals(v, gm.readU64(gpa + SLOT - 8));
            assertTrue(gm.dirtyBitmap(id).isDirty(SLOT / PAGE - 1), "dirty bit of slot " + id);
            Long next = model.higherKey(gpa);
            if (next == null || next > gpa + SLOT) {
                long hole = gpa + SLOT;
                GuestMemoryException x = assertThrows(GuestMemoryException.class, () -> gm.readU64(hole));
                assertEquals(GuestMemoryException.Reason.NOT_RAM, x.reason());
                assertThrows(GuestMemoryException.class, () -> gm.read(hole - 4, new byte[8]));
            } else {
                // adjacent slots: one bulk read and one unaligned u64 across the boundary
                byte[] b = new byte[16];
                gm.read(next - 8, b);
                assertEquals(v, java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong(0));
                assertEquals(0x5100_0000L + model.get(next), java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong(8));
                assertEquals(v >>> 32 | (0x5100_0000L + model.get(next)) << 32, gm.readU64(next - 4));
            }
        }
        List<Integer> ids = new ArrayList<>(model.values());
        assertEquals(ids.size(), gm.ramSlots().size());
    }

    @Test
    void memslotIdsAreTheIndicesTheLayoutUses() {
        Memslots memslots = new Memslots();
        try (HostRegion region = HostRegion.anonymous(4 * SLOT).create()) {
            GuestMemory gm = new GuestMemory(memslots);
            gm.addRam(9000, 0, region, 0, SLOT, 0);
            gm.addRam(3, SLOT, region, SLOT, SLOT, Memslot.READONLY);
            assertEquals(9000, gm.slotIndexOf(8));
            assertEquals(3, gm.slotIndexOf(SLOT + 8));
            assertEquals(-1, gm.slotIndexOf(2 * SLOT));
            assertThrows(ReadOnlySlotException.class, () -> gm.writeU64(SLOT, 1));
            gm.removeRam(9000);
            assertEquals(-1, gm.slotIndexOf(8));
            assertThrows(IllegalArgumentException.class, () -> gm.dirtyBitmap(9000));
            gm.close();
        }
    }
}
