package io.guestmem.snapshot;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.access.DirtyPages;
import io.guestmem.access.GuestMemory;
import io.guestmem.access.RamSlot;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.sys.Posix;
import io.guestmem.vm.VmMemory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Snapshots of real memory, checked against the kernel's view: which pages hold anything is pagemap's answer
 * (read here independently of the writer, which asks PAGEMAP_SCAN and, for files, SEEK_DATA), and a restore is
 * compared byte for byte and by pagemap (untouched pages stay absent).
 */
class SnapshotTest {
    static final long P = Posix.PAGE_SIZE, MiB = 1 << 20;
    static final long PMD = HugePagePools.thpSize();

    @TempDir Path dir;
    final List<AutoCloseable> open = new ArrayList<>();

    @AfterEach
    void closeAll() throws Exception {
        for (AutoCloseable c : open.reversed()) c.close();
    }

    <T extends AutoCloseable> T own(T c) {
        open.add(c);
        return c;
    }

    /** anon, memfd and THP slots; returns the memory. */
    VmMemory layout() {
        VmMemory vm = own(new VmMemory());
        vm.memory().addRam(0, 0, own(HostRegion.anonymous(4 * MiB).create()));
        vm.memory().addRam(1, 64 * MiB, own(HostRegion.memfd(4 * MiB).create()));
        vm.memory().addRam(2, 128 * MiB, own(HostRegion.thp(2 * PMD).create()));
        return vm;
    }

    /** Writes seeded patterns to some pages and zeros to others (every fourth) of every slot. */
    static void scribble(GuestMemory gm, long seed, int pagesPerSlot) {
        Random rnd = new Random(seed);
        for (RamSlot r : gm.ramSlots()) {
            long base = r.slot().baseGfn() * P, n = r.slot().npages();
            for (int k = 0; k < pagesPerSlot; k++) {
                long page = (rnd.nextLong() & Long.MAX_VALUE) % n;
                byte[] b = new byte[(int) P];
                if (k % 4 != 3) rnd.nextBytes(b);
                gm.write(base + page * P, b);
            }
        }
    }

    /** Pages of a slot pagemap calls present or swapped, and of those, the ones that read non-zero. */
    static long[] kernelCounts(Pagemap pm, GuestMemory gm, RamSlot r) {
        long[] raw = pm.read(r.slot().userspaceAddr(), (int) r.slot().npages());
        long present = 0, nonZero = 0;
        byte[] page = new byte[(int) P], zero = new byte[(int) P];
        for (int i = 0; i < raw.length; i++) {
            if (!PagemapEntry.isPresent(raw[i]) && !PagemapEntry.isSwapped(raw[i])) continue;
            present++;
            gm.read(r.slot().baseGfn() * P + i * P, page);
            if (!Arrays.equals(page, zero)) nonZero++;
        }
        return new long[] {present, nonZero};
    }

    /** Whether the kernel backs plain anonymous memory with THPs ("[always]" in sysfs). */
    static boolean thpAlways() throws java.io.IOException {
        Path p = Path.of("/sys/kernel/mm/transparent_hugepage/enabled");
        return Files.exists(p) && Files.readString(p).contains("[always]");
    }

    static void assertSameContents(GuestMemory a, GuestMemory b) {
        List<RamSlot> ra = a.ramSlots(), rb = b.ramSlots();
        assertEquals(ra.size(), rb.size());
        byte[] x = new byte[(int) MiB], y = new byte[(int) MiB];
        for (int i = 0; i < ra.size(); i++) {
            long gpa = ra.get(i).slot().baseGfn() * P, len = ra.get(i).slot().npages() * P;
            assertEquals(gpa, rb.get(i).slot().baseGfn() * P);
            for (long off = 0; off < len; off += MiB) {
                a.read(gpa + off, x);
                b.read(gpa + off, y);
                assertArrayEquals(x, y, "slot " + ra.get(i).slot().id() + " at +0x" + Long.toHexString(off));
            }
        }
    }

    @Test
    void aFullSnapshotHoldsTheDataPagesTheKernelShowsAndRecordsTheZeroOnes() throws Exception {
        VmMemory vm = layout();
        GuestMemory gm = vm.memory();
        scribble(gm, 1, 40);
        long present = 0, nonZero = 0, total = 0, anonPresent = -1;
        try (Pagemap pm = Pagemap.openSelf()) {
            for (RamSlot r : gm.ramSlots()) {
                long[] k = kernelCounts(pm, gm, r);
                if (anonPresent < 0) anonPresent = k[0];
                present += k[0];
                nonZero += k[1];
                total += r.slot().npages();
            }
        }
        Path file = dir.resolve("full.snap");
        SnapshotInfo info = SnapshotWriter.write(gm, file);
        System.out.printf("snapshot: %d data pages, %d zero, %d untouched, %d bytes, %.1f ms%n", info.pagesSaved(),
                info.zeroPages(), info.untouchedPages(), info.bytesWritten(), info.millis());
        assertEquals(nonZero, info.pagesSaved(), "data pages: the kernel's present pages that read non-zero");
        assertEquals(present - nonZero, info.zeroPages(), "zero pages: present, all zero, recorded not written");
        assertEquals(total - present, info.untouchedPages(), "untouched: neither present nor swapped");
        assertEquals(Files.size(file), info.bytesWritten());
        assertTrue(info.bytesWritten() >= info.pagesSaved() * P && info.bytesWritten() < (info.pagesSaved() + 64) * P,
                "the file is the data pages and a little more: " + info.bytesWritten());
        assertTrue(info.pagesSaved() > 0 && info.zeroPages() > 0 && info.untouchedPages() > 0, info.toString());
        try (Snapshot s = Snapshot.open(file)) {
            s.verify();
            assertEquals(List.of("anon", "memfd", "thp"), s.manifest().slots().stream().map(SnapshotSlot::backingLabel).toList());
            assertFalse(s.manifest().incremental());
            try (RestoredMemory back = SnapshotRestore.eager(List.of(s), null)) {
                // Only the data pages were written: the restored anonymous slot has exactly those present
                // (checked first: comparing contents reads every page, which maps the zero page).
                // Where THP is "always" (the arm64 images), a write faults in a whole THP, so the bound is the
                // original's own presence; with base pages it is exactly the data pages.
                RamSlot anon = back.memory().memory().ramSlots().get(0);
                try (Pagemap pm = Pagemap.openSelf()) {
                    long[] k = kernelCounts(pm, back.memory().memory(), anon);
                    long data = s.manifest().slots().get(0).dataPages();
                    assertTrue(k[0] >= data && k[0] <= anonPresent, "restored anon pages present: " + k[0] + ", data pages "
                            + data + ", present in the original " + anonPresent);
                    if (!thpAlways()) assertEquals(data, k[0], "base pages: present = data pages");
                }
                assertSameContents(gm, back.memory().memory());
                assertEquals(info.pagesSaved(), back.stats().pagesWritten());
                assertEquals(0, back.stats().pagesZeroed(), "fresh memory: nothing to zero");
                assertEquals(List.of("anon", "memfd", "thp"), back.regions().stream().map(r -> r.backing().label()).toList());
            }
        }
        assertFalse(Files.list(dir).anyMatch(p -> p.getFileName().toString().contains(".tmp-")), "no temporary file left");
    }

    /**
     * The file is published whole: a new name is one link of an unnamed (O_TMPFILE) file, an existing snapshot
     * is replaced by a rename, and a temporary name a writer that died between those two calls left is swept by
     * the next write to that target (one of a live process is not).
     */
    @Test
    void aSnapshotReplacesAnEarlierOneWholeAndSweepsADeadWritersTemporary() throws Exception {
        VmMemory vm = layout();
        scribble(vm.memory(), 3, 8);
        Path target = dir.resolve("s.snap");
        long first = SnapshotWriter.write(vm.memory(), target).manifest().id();
        Process gone = new ProcessBuilder("true").start();
        gone.waitFor();
        Path dead = Files.writeString(dir.resolve(".s.snap.tmp-" + gone.pid() + "-1"), "left by a writer killed between link and rename");
        Path live = Files.writeString(dir.resolve(".s.snap.tmp-" + ProcessHandle.current().pid() + "-2"), "a live writer's");
        scribble(vm.memory(), 4, 8);
        long second = SnapshotWriter.write(vm.memory(), target).manifest().id();
        assertNotEquals(first, second);
        try (Snapshot s = Snapshot.open(target)) {
            assertEquals(second, s.manifest().id(), "the name holds the new snapshot, whole");
        }
        assertFalse(Files.exists(dead), "a dead writer's temporary is swept");
        assertTrue(Files.exists(live), "a live writer's is not");
        Files.delete(live);
        try (var l = Files.list(dir)) {
            assertEquals(List.of(target), l.toList(), "nothing else in the directory");
        }
    }

    @Test
    void anIncrementHoldsOnlyThePagesWrittenSinceItsBase() throws Exception {
        VmMemory vm = layout();
        GuestMemory gm = vm.memory();
        scribble(gm, 2, 30);
        gm.pagesToSend(null); // the base covers everything written so far
        Path base = dir.resolve("base.snap"), inc = dir.resolve("inc.snap");
        SnapshotInfo b = SnapshotWriter.write(gm, base);
        // after the base: new data, and a page that held data zeroed
        scribble(gm, 3, 10);
        long anyData = -1;
        try (Snapshot s = Snapshot.open(base)) {
            for (Snapshot.Run r : s.runs()) if (!r.zero() && r.slotIndex() == 0) { anyData = r.firstPage(); break; }
        }
        assertTrue(anyData >= 0);
        gm.fill(anyData * P, P, (byte) 0);
        List<DirtyPages> dirty = gm.pagesToSend(null);
        long dirtyCount = dirty.stream().mapToLong(DirtyPages::count).sum();
        try (Snapshot bs = Snapshot.open(base)) {
            SnapshotInfo i = SnapshotWriter.writeIncremental(gm, bs, dirty, inc);
            assertEquals(dirtyCount, i.pagesSaved() + i.zeroPages(), "every dirty page, and only those");
            assertTrue(i.zeroPages() >= 1, "the zeroed page is recorded as zero");
            assertTrue(i.bytesWritten() < b.bytesWritten(), "an increment is smaller than its base");
            try (Snapshot is = Snapshot.open(inc)) {
                assertEquals(bs.manifest().id(), is.manifest().baseId());
                try (RestoredMemory back = SnapshotRestore.eager(List.of(bs, is), null)) {
                    assertSameContents(gm, back.memory().memory());
                }
                assertThrows(SnapshotLayoutException.class, () -> SnapshotRestore.eager(List.of(is), null),
                        "an increment alone");
                assertThrows(SnapshotLayoutException.class, () -> SnapshotRestore.eager(List.of(is, bs), null),
                        "out of order");
            }
            // restore into the memory itself, which has moved on: back to the increment's state
            scribble(gm, 4, 10);
            try (Snapshot is = Snapshot.open(inc); RestoredMemory ref = SnapshotRestore.eager(List.of(bs, is), null)) {
                RestoreStats st = SnapshotRestore.into(gm, List.of(bs, is));
                assertTrue(st.pagesZeroed() > 0, "pages written after the snapshot that it does not hold are zeroed");
                assertSameContents(ref.memory().memory(), gm);
            }
        }
    }

    @Test
    void aRestoreIntoAnotherLayoutIsRefusedBeforeAnythingIsWritten() throws Exception {
        VmMemory vm = layout();
        scribble(vm.memory(), 5, 8);
        Path file = dir.resolve("a.snap");
        SnapshotWriter.write(vm.memory(), file);
        VmMemory other = own(new VmMemory());
        HostRegion r = own(HostRegion.anonymous(4 * MiB).create());
        other.memory().addRam(0, 2 * MiB, r); // another gpa
        other.memory().writeU64(2 * MiB, 0x1234);
        try (Snapshot s = Snapshot.open(file)) {
            SnapshotLayoutException e = assertThrows(SnapshotLayoutException.class, () -> SnapshotRestore.into(other.memory(), List.of(s)));
            assertTrue(e.getMessage().contains("slot 0 at 0x0"), e.getMessage());
        }
        assertEquals(0x1234, other.memory().readU64(2 * MiB), "nothing written");
        // and an increment on a base of another layout
        try (Snapshot s = Snapshot.open(file)) {
            assertThrows(SnapshotLayoutException.class,
                    () -> SnapshotWriter.writeIncremental(other.memory(), s, other.memory().pagesToSend(null), dir.resolve("x.snap")));
        }
        assertFalse(Files.exists(dir.resolve("x.snap")));
    }
}
