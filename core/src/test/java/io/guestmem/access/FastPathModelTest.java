package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * GuestMemory against a plain model, on real host memory: random layouts whose slot boundaries sit at every
 * alignment the bucket table meets (page, 64 KiB, 2 MiB; adjacent slots, holes, a READONLY slot, and in one
 * layout a slot 1 TiB away that forces coarse buckets with boundaries inside them), then thousands of random
 * typed, bulk, opaque, acquire/release and atomic accesses at gpas picked near slot and bucket edges. Every access must agree
 * with the model (bytes, exceptions, the gpa and byte count they name), the host regions must hold exactly
 * the model's bytes, and each slot's dirty log exactly the pages the model wrote.
 */
class FastPathModelTest {
    /** The host page: slot sizes and dirty bits are in host pages (4 KiB on x86-64, 16 KiB on a 16K arm64 kernel). */
    /** Random accesses per seed ({@code -Dguestmem.model.ops}; the arm64 runner, under TCG, runs fewer). */
    static final int OPS = Integer.getInteger("guestmem.model.ops", 20_000);
    static final long PAGE = io.guestmem.sys.Posix.PAGE_SIZE, KiB64 = Math.max(64 << 10, PAGE), MiB2 = 2 << 20;

    /** One slot of the model: its bytes and the pages written through the API. */
    record Slot(int id, long base, long size, boolean readOnly, byte[] bytes, boolean[] dirty, HostRegion region) {
        long end() {
            return base + size;
        }
    }

    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 4, 5, 6})
    void everyAccessAgreesWithTheModel(long seed) {
        Random rnd = new Random(seed);
        Memslots memslots = new Memslots();
        GuestMemory gm = new GuestMemory(memslots);
        List<Slot> slots = new ArrayList<>();
        try {
            long gpa = 0;
            int n = 3 + rnd.nextInt(6);
            long unit = switch ((int) (seed % 3)) { case 0 -> PAGE; case 1 -> KiB64; default -> MiB2; };
            for (int id = 0; id < n; id++) {
                if (rnd.nextInt(3) == 0) gpa += unit * (1 + rnd.nextInt(3)); // a hole
                long size = unit * (1 + rnd.nextInt(unit == MiB2 ? 2 : 6));
                if (unit != PAGE && rnd.nextBoolean()) size += PAGE * (1 + rnd.nextInt(3)); // an odd end
                boolean ro = id == n - 1 && rnd.nextBoolean();
                slots.add(addSlot(gm, rnd, id, gpa, size, ro));
                gpa += size;
            }
            if (seed == 6) slots.add(addSlot(gm, rnd, n, 1L << 40, 3 * PAGE, false)); // far away: coarse buckets
            // past the first 1024 page-sized buckets: SlotTable serves those from a head array, the rest from chunks
            if (seed == 3) slots.add(addSlot(gm, rnd, n, gpa + 1100 * PAGE, 3 * PAGE, false));
            for (int op = 0; op < OPS; op++) step(gm, slots, rnd, op);
            for (Slot s : slots) {
                assertArrayEquals(s.bytes(), s.region().segment().asSlice(0, s.size()).toArray(ValueLayout.JAVA_BYTE),
                        "host bytes of slot " + s.id());
                long[] bits = gm.collectDirty(s.id()).bitmap();
                for (int p = 0; p < s.dirty().length; p++)
                    assertEquals(s.dirty()[p], (bits[p >>> 6] & (1L << p)) != 0, "dirty bit of page " + p + " of slot " + s.id());
            }
        } finally {
            gm.close();
            for (Slot s : slots) s.region().close();
        }
    }

    private static Slot addSlot(GuestMemory gm, Random rnd, int id, long gpa, long size, boolean ro) {
        HostRegion r = HostRegion.anonymous(size).create();
        byte[] init = new byte[(int) size];
        rnd.nextBytes(init);
        r.segment().asSlice(0, size).copyFrom(java.lang.foreign.MemorySegment.ofArray(init));
        gm.addRam(id, gpa, r, 0, size, ro ? Memslot.READONLY : 0);
        return new Slot(id, gpa, size, ro, init, new boolean[(int) (size / PAGE)], r);
    }

    /** A gpa near an interesting edge: a slot's start or end, a 4K/64K/2M boundary, or anywhere. */
    private static long pickGpa(List<Slot> slots, Random rnd) {
        Slot s = slots.get(rnd.nextInt(slots.size()));
        long edge = switch (rnd.nextInt(5)) {
            case 0 -> s.base();
            case 1 -> s.end();
            case 2 -> (s.base() + rnd.nextLong(s.size())) & -PAGE;
            case 3 -> (s.base() + rnd.nextLong(s.size())) & -KiB64;
            default -> s.base() + rnd.nextLong(s.size());
        };
        return Math.max(0, edge + rnd.nextInt(17) - 8);
    }

    private static Slot slotOf(List<Slot> slots, long gpa) {
        for (Slot s : slots) if (gpa >= s.base() && gpa < s.end()) return s;
        return null;
    }

    /** The first gpa of [gpa, gpa+len) that a read (write) may not touch, or -1. */
    private static long firstBad(List<Slot> slots, long gpa, long len, boolean write) {
        for (long g = gpa; g < gpa + len; g++) {
            Slot s = slotOf(slots, g);
            if (s == null || (write && s.readOnly())) return g;
        }
        return -1;
    }

    private static long modelRead(List<Slot> slots, long gpa, int n) {
        long v = 0;
        for (int k = 0; k < n; k++) {
            Slot s = slotOf(slots, gpa + k);
            v |= Byte.toUnsignedLong(s.bytes()[(int) (gpa + k - s.base())]) << (8 * k);
        }
        return v;
    }

    private static void modelWrite(List<Slot> slots, long gpa, byte[] data, int len) {
        for (int k = 0; k < len; k++) {
            Slot s = slotOf(slots, gpa + k);
            int o = (int) (gpa + k - s.base());
            s.bytes()[o] = data[k];
            s.dirty()[(int) (o / PAGE)] = true;
        }
    }

    private static byte[] le(long v, int n) {
        byte[] b = new byte[n];
        for (int k = 0; k < n; k++) b[k] = (byte) (v >>> (8 * k));
        return b;
    }

    private static long mask(int n) {
        return n == 8 ? -1L : (1L << (8 * n)) - 1;
    }

    private static void step(GuestMemory gm, List<Slot> slots, Random rnd, int op) {
        long gpa = pickGpa(slots, rnd);
        int size = 1 << rnd.nextInt(4);
        String where = "op " + op + " at gpa 0x" + Long.toHexString(gpa) + " size " + size;
        switch (rnd.nextInt(6)) {
            case 0 -> { // plain typed read
                long bad = firstBad(slots, gpa, size, false);
                if (bad >= 0) {
                    PartialAccessException e = assertThrows(PartialAccessException.class, () -> typedRead(gm, gpa, size), where);
                    assertEquals(bad, e.firstBadGpa(), where);
                } else {
                    assertEquals(modelRead(slots, gpa, size), typedRead(gm, gpa, size) & mask(size), where);
                }
            }
            case 1 -> { // plain typed write: all or nothing
                long v = rnd.nextLong();
                long bad = firstBad(slots, gpa, size, true);
                if (bad >= 0) {
                    GuestMemoryException e = assertThrows(GuestMemoryException.class, () -> typedWrite(gm, gpa, size, v), where);
                    assertEquals(bad, e.firstBadGpa(), where);
                } else {
                    typedWrite(gm, gpa, size, v);
                    modelWrite(slots, gpa, le(v, size), size);
                }
            }
            case 2 -> { // bulk read, up to three pages
                int len = 1 + rnd.nextInt((int) (3 * PAGE));
                byte[] dst = new byte[len];
                long bad = firstBad(slots, gpa, len, false);
                if (bad >= 0) {
                    PartialAccessException e = assertThrows(PartialAccessException.class, () -> gm.read(gpa, dst), where);
                    assertEquals(bad, e.firstBadGpa(), where);
                    assertEquals(bad - gpa, e.bytesDone(), where);
                } else {
                    gm.read(gpa, dst);
                }
                int done = (int) (bad >= 0 ? bad - gpa : len);
                for (int k = 0; k < done; k++) assertEquals((byte) modelRead(slots, gpa + k, 1), dst[k], where + " byte " + k);
            }
            case 3 -> { // bulk write, up to three pages: the bytes before the first refusal land
                int len = 1 + rnd.nextInt((int) (3 * PAGE));
                byte[] src = new byte[len];
                rnd.nextBytes(src);
                long bad = firstBad(slots, gpa, len, true);
                if (bad >= 0) {
                    GuestMemoryException e = assertThrows(GuestMemoryException.class, () -> gm.write(gpa, src), where);
                    assertEquals(bad, e.firstBadGpa(), where);
                    assertEquals(bad - gpa, e.bytesDone(), where);
                    modelWrite(slots, gpa, src, (int) (bad - gpa));
                } else {
                    gm.write(gpa, src);
                    modelWrite(slots, gpa, src, len);
                }
            }
            case 4 -> { // opaque or acquire/release read/write at an aligned gpa
                long g = gpa & -size;
                boolean write = rnd.nextBoolean(), ordered = rnd.nextBoolean();
                long bad = firstBad(slots, g, size, write);
                long v = rnd.nextLong();
                if (bad >= 0) {
                    GuestMemoryException e = assertThrows(GuestMemoryException.class, () -> volatileAccess(gm, g, size, write, v, ordered), where);
                    assertEquals(bad, e.firstBadGpa(), where);
                } else if (write) {
                    volatileAccess(gm, g, size, true, v, ordered);
                    modelWrite(slots, g, le(v, size), size);
                } else {
                    assertEquals(modelRead(slots, g, size), volatileAccess(gm, g, size, false, 0, ordered) & mask(size), where);
                }
                if (size > 1) {
                    MisalignedAccessException e = assertThrows(MisalignedAccessException.class,
                            () -> volatileAccess(gm, g + 1, size, write, v, ordered), where);
                    assertEquals(g + 1, e.firstBadGpa(), where);
                }
            }
            default -> { // atomic add at an aligned u32/u64
                int n = rnd.nextBoolean() ? 4 : 8;
                long g = gpa & -n;
                long delta = rnd.nextLong();
                long bad = firstBad(slots, g, n, true);
                if (bad >= 0) {
                    assertThrows(GuestMemoryException.class, () -> addAtomic(gm, g, n, delta), where);
                } else {
                    long old = modelRead(slots, g, n);
                    assertEquals(old, addAtomic(gm, g, n, delta) & mask(n), where);
                    modelWrite(slots, g, le(old + delta, n), n);
                }
            }
        }
    }

    private static long typedRead(GuestMemory gm, long gpa, int size) {
        return switch (size) {
            case 1 -> gm.readU8(gpa);
            case 2 -> gm.readU16(gpa);
            case 4 -> gm.readU32(gpa);
            default -> gm.readU64(gpa);
        };
    }

    private static void typedWrite(GuestMemory gm, long gpa, int size, long v) {
        switch (size) {
            case 1 -> gm.writeU8(gpa, (int) v);
            case 2 -> gm.writeU16(gpa, (int) v);
            case 4 -> gm.writeU32(gpa, (int) v);
            default -> gm.writeU64(gpa, v);
        }
    }

    /** An opaque access, or with {@code ordered} a release write / acquire read. */
    private static long volatileAccess(GuestMemory gm, long gpa, int size, boolean write, long v, boolean ordered) {
        if (ordered) return orderedAccess(gm, gpa, size, write, v);
        if (write) {
            switch (size) {
                case 1 -> gm.writeU8Volatile(gpa, (int) v);
                case 2 -> gm.writeU16Volatile(gpa, (int) v);
                case 4 -> gm.writeU32Volatile(gpa, (int) v);
                default -> gm.writeU64Volatile(gpa, v);
            }
            return 0;
        }
        return switch (size) {
            case 1 -> gm.readU8Volatile(gpa);
            case 2 -> gm.readU16Volatile(gpa);
            case 4 -> gm.readU32Volatile(gpa);
            default -> gm.readU64Volatile(gpa);
        };
    }

    private static long orderedAccess(GuestMemory gm, long gpa, int size, boolean write, long v) {
        if (write) {
            switch (size) {
                case 1 -> gm.writeU8Release(gpa, (int) v);
                case 2 -> gm.writeU16Release(gpa, (int) v);
                case 4 -> gm.writeU32Release(gpa, (int) v);
                default -> gm.writeU64Release(gpa, v);
            }
            return 0;
        }
        return switch (size) {
            case 1 -> gm.readU8Acquire(gpa);
            case 2 -> gm.readU16Acquire(gpa);
            case 4 -> gm.readU32Acquire(gpa);
            default -> gm.readU64Acquire(gpa);
        };
    }

    private static long addAtomic(GuestMemory gm, long gpa, int n, long delta) {
        return n == 4 ? gm.getAndAddU32(gpa, (int) delta) : gm.getAndAddU64(gpa, delta);
    }
}
