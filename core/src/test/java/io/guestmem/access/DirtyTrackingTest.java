package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import java.nio.ByteBuffer;
import java.nio.channels.Pipe;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentSkipListSet;
import org.junit.jupiter.api.Test;

/**
 * The VMM's own dirty log on real memory. The regions are fresh private anonymous memory and the test only
 * writes (a read would map the zero page), so the kernel's pagemap "present" bit is an independent record of
 * which pages were written: the collected pages must equal it, and equal the test's own list.
 */
class DirtyTrackingTest {
    static final long MiB = 1 << 20;
    static final long P = io.guestmem.sys.Posix.PAGE_SIZE;

    static TreeSet<Long> presentGfns(Pagemap pm, HostRegion r, long baseGfn) {
        TreeSet<Long> out = new TreeSet<>();
        long[] raw = pm.read(r.address(), (int) (r.size() / P));
        for (int i = 0; i < raw.length; i++) if (PagemapEntry.isPresent(raw[i])) out.add(baseGfn + i);
        return out;
    }

    static TreeSet<Long> gfnsOf(List<DirtyPages> pages) {
        TreeSet<Long> out = new TreeSet<>();
        for (DirtyPages d : pages) for (long g : d.gfns()) out.add(g);
        return out;
    }

    @Test
    void everyPageWrittenThroughTheApiIsReportedAndNoOther() throws Exception {
        try (HostRegion a = HostRegion.anonymous(MiB).create(); HostRegion b = HostRegion.anonymous(MiB).create();
             Pagemap pm = Pagemap.openSelf()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(0, 0, a);
            gm.addRam(1, MiB, b);
            Random rnd = new Random(11);
            TreeSet<Long> written = new TreeSet<>();
            Pipe pipe = Pipe.open();
            for (int k = 0; k < 120; k++) {
                long gpa = (rnd.nextLong() & Long.MAX_VALUE) % (2 * MiB - 16) & ~7L;
                int len;
                switch (k % 12) {
                    case 0 -> { gm.writeU8(gpa, 1); len = 1; }
                    case 1 -> { gm.writeU16(gpa + 1, 1); len = 2; gpa += 1; }
                    case 2 -> { gm.writeU32(gpa, 1); len = 4; }
                    case 3 -> { gm.writeU64(gpa, 1); len = 8; }
                    case 4 -> { gm.writeU64Volatile(gpa, 1); len = 8; }
                    case 5 -> { gm.getAndAddU64(gpa, 1); len = 8; }
                    case 6 -> { gm.compareAndSetU32(gpa, 0, 1); len = 4; }
                    case 7 -> { len = 1 + rnd.nextInt((int) (3 * P)); len = (int) Math.min(len, 2 * MiB - gpa); gm.write(gpa, new byte[len]); }
                    case 8 -> { len = 100; gm.write(gpa, ByteBuffer.allocateDirect(len)); }
                    case 9 -> { len = (int) Math.min(2 * P, 2 * MiB - gpa); gm.fill(gpa, len, (byte) 3); }
                    case 10 -> {
                        len = (int) Math.min(P + 1, 2 * MiB - gpa);
                        pipe.sink().write(ByteBuffer.allocate(len));
                        assertEquals(len, gm.readFrom(gpa, pipe.source(), len));
                    }
                    default -> { gm.writeU32Volatile(gpa, 5); len = 4; }
                }
                for (long g = gpa / P; g <= (gpa + len - 1) / P; g++) written.add(g);
            }
            TreeSet<Long> kernel = presentGfns(pm, a, 0);
            kernel.addAll(presentGfns(pm, b, MiB / P));
            List<DirtyPages> round1 = gm.pagesToSend(null);
            assertEquals(written, gfnsOf(round1), "the test's own list");
            assertEquals(kernel, gfnsOf(round1), "the kernel's list of pages with memory behind them");
            assertTrue(gfnsOf(gm.pagesToSend(null)).isEmpty(), "collected means cleared");
            // reads and failed writes mark nothing
            gm.readU64(0);
            gm.read(MiB, new byte[8192]);
            assertThrows(GuestMemoryException.class, () -> gm.write(2 * MiB - 1, new byte[2]));
            assertEquals(List.of(2 * MiB / P - 1), gfnsOf(gm.pagesToSend(null)).stream().toList(),
                    "only the byte that landed before the hole");
            gm.close();
        }
    }

    @Test
    void mergeWithAnExternalTrackerGivesOnePagesToSendAnswer() {
        // 256 host pages, whatever their size (1 MiB with 4 KiB pages, 4 MiB with 16 KiB ones)
        try (HostRegion a = HostRegion.anonymous(256 * P).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            long base = 0x100000;
            Memslot s = gm.addRam(4, base, a, 0, 256 * P, Memslot.LOG_DIRTY_PAGES);
            long g0 = base / P;
            gm.writeU64(base + 3 * P, 1);     // VMM writes page 3 and 70
            gm.writeU64(base + 70 * P, 1);
            // what the guest wrote, as KVM_GET_DIRTY_LOG / SlotDirtyTracker.collect() would report it
            DirtyPages merged = gm.collectDirty(4, new long[] {g0 + 3, g0 + 5, g0 + 200});
            assertArrayEquals(new long[] {g0 + 3, g0 + 5, g0 + 70, g0 + 200}, merged.gfns());
            assertEquals(2, merged.fromVmm());
            assertEquals(3, merged.fromExternal());
            assertEquals(4, merged.count());
            assertTrue(merged.contains(g0 + 70) && !merged.contains(g0 + 4));

            gm.writeU8(base + P * 255, 1);
            long[] kvmLog = new long[DirtyBitmap.wordsFor(s.npages())];
            kvmLog[0] = 1L << 1;
            DirtyPages m2 = gm.collectDirtyWithBitmap(4, kvmLog);
            assertArrayEquals(new long[] {g0 + 1, g0 + 255}, m2.gfns());
            assertThrows(IllegalArgumentException.class, () -> gm.collectDirty(4, new long[] {g0 + 256}));
            assertThrows(IllegalArgumentException.class, () -> gm.collectDirtyWithBitmap(4, new long[1]));
            assertThrows(IllegalArgumentException.class, () -> gm.collectDirty(9));
            gm.close();
        }
    }

    @Test
    void aCollectorRacingAWriterNeverLosesAPage() throws Exception {
        try (HostRegion a = HostRegion.anonymous(4 * MiB).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(0, 0, a);
            long pages = 4 * MiB / P;
            ConcurrentSkipListSet<Long> collected = new ConcurrentSkipListSet<>();
            Thread writer = new Thread(() -> {
                for (long p = 0; p < pages; p++) {
                    gm.writeU64(p * P, p);
                    gm.writeU64((p / 2) * P + 8, p); // and rewrite an older page
                }
            });
            writer.start();
            while (writer.isAlive()) for (long g : gm.collectDirty(0).gfns()) collected.add(g);
            writer.join();
            for (long g : gm.collectDirty(0).gfns()) collected.add(g);
            List<Long> all = new ArrayList<>();
            for (long p = 0; p < pages; p++) all.add(p);
            assertEquals(all, new ArrayList<>(collected));
            gm.close();
        }
    }

    /**
     * The migration invariant, with pages written again and again (the writers' already-marked fast path): a
     * collector that copies the pages each harvest reports ends, after a last harvest once the writer stopped,
     * with every page's last value. A mark skipped on a stale word, or a copy that missed a write whose bit was
     * seen set, would leave an older value.
     */
    @Test
    void copiesAfterEachHarvestEndWithEveryPagesLastValue() throws Exception {
        try (HostRegion a = HostRegion.anonymous(4 * MiB).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(0, 0, a);
            int pages = 64, writes = 400_000;
            long[] copy = new long[pages], last = new long[pages];
            Thread writer = new Thread(() -> {
                long x = 0x9E3779B97F4A7C15L;
                for (int k = 1; k <= writes; k++) {
                    x ^= x << 13; x ^= x >>> 7; x ^= x << 17;
                    int p = (int) Long.remainderUnsigned(x, pages);
                    gm.writeU64((long) p * P, k);
                    last[p] = k;
                }
            });
            writer.start();
            int rounds = 0;
            while (writer.isAlive()) {
                for (long g : gm.collectDirty(0).gfns()) copy[(int) g] = gm.readU64(g * P);
                rounds++;
            }
            writer.join();
            for (long g : gm.collectDirty(0).gfns()) copy[(int) g] = gm.readU64(g * P);
            assertArrayEquals(last, copy, "after " + rounds + " harvests racing the writer");
            gm.close();
        }
    }
}
