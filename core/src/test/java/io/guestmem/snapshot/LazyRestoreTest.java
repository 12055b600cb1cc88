package io.guestmem.snapshot;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.access.GuestMemory;
import io.guestmem.access.RamSlot;
import io.guestmem.host.HostRegion;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import io.guestmem.vm.VmMemory;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Lazy restore through userfaultfd on real memory. The faults come from the kernel: a {@code pwrite} from the
 * restored memory into a memfd makes the kernel read pages that are not there yet, exactly as KVM's GUP does
 * for a vCPU, and the call returns once the handler served them. What the kernel then holds (the memfd's
 * bytes, pagemap) is compared with the memory the snapshot was taken of.
 */
class LazyRestoreTest {
    static final long P = Posix.PAGE_SIZE, MiB = 1 << 20;
    @TempDir Path dir;

    /** anon and memfd slots with data at known pages; returns the snapshot file (the source memory closed). */
    Path snapshotOf(long seed, byte[][] keep) throws Exception {
        Path file = dir.resolve("s" + seed + ".snap");
        try (VmMemory vm = new VmMemory(); HostRegion a = HostRegion.anonymous(4 * MiB).create();
             HostRegion m = HostRegion.memfd(4 * MiB).create()) {
            vm.memory().addRam(0, 0, a);
            vm.memory().addRam(1, 64 * MiB, m);
            Random rnd = new Random(seed);
            for (int i = 0; i < keep.length; i++) {
                keep[i] = new byte[(int) P];
                rnd.nextBytes(keep[i]);
                vm.memory().write(gpaOf(i), keep[i]);
            }
            SnapshotWriter.write(vm.memory(), file);
        }
        return file;
    }

    /** Page i of the pattern: even ones in the anon slot, odd ones in the memfd slot, spread out. */
    static long gpaOf(int i) {
        return (i % 2 == 0 ? 0 : 64 * MiB) + (i * 37L % (4 * MiB / P)) * P;
    }

    /** The kernel reads {@code len} bytes of guest memory at {@code gpa} (a pwrite from its hva); returns them. */
    static byte[] kernelRead(GuestMemory gm, long gpa, int len) {
        RamSlot r = gm.ramSlots().stream().filter(s -> gpa >= s.slot().baseGfn() * P
                && gpa < (s.slot().baseGfn() + s.slot().npages()) * P).findFirst().orElseThrow();
        long hva = r.slot().userspaceAddr() + (gpa - r.slot().baseGfn() * P);
        int fd = Memfd.create("lazy-restore-test", Memfd.MFD_CLOEXEC);
        try (Arena arena = Arena.ofConfined()) {
            assertEquals(len, Posix.pwrite(fd, MemorySegment.ofAddress(hva).reinterpret(len), len, 0));
            MemorySegment back = arena.allocate(len);
            assertEquals(len, Posix.pread(fd, back, len, 0));
            return back.toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        } finally {
            Posix.close(fd);
        }
    }

    @Test
    void kernelFaultsAndAccessorsAreServedWithTheSnapshotsBytes() throws Exception {
        byte[][] keep = new byte[24][];
        Path file = snapshotOf(1, keep);
        try (Snapshot s = Snapshot.open(file); LazyRestore lazy = LazyRestore.start(List.of(s), null, false)) {
            GuestMemory gm = lazy.memory().memory();
            // kernel faults: a data page of each slot, and a page nothing was recorded in
            assertArrayEquals(keep[0], kernelRead(gm, gpaOf(0), (int) P), "anon page, through a kernel fault");
            assertArrayEquals(keep[1], kernelRead(gm, gpaOf(1), (int) P), "memfd page, through a kernel fault");
            long nothing = 3 * MiB + 5 * P;
            assertArrayEquals(new byte[(int) P], kernelRead(gm, nothing, (int) P), "an unrecorded page reads zero");
            LazyRestoreStats st = lazy.stats();
            assertEquals(3, st.faultsServed(), st.toString());
            assertTrue(st.firstFaultMicros() > 0, st.toString());
            assertFalse(st.complete());
            // accessors: brought in on the calling thread, never a fault in Java code
            for (int i = 2; i < keep.length; i++) {
                byte[] b = new byte[(int) P];
                gm.read(gpaOf(i), b);
                assertArrayEquals(keep[i], b, "page " + i + " through the accessors");
            }
            assertTrue(lazy.stats().accessorServed() > 0);
            assertTrue(lazy.awaitComplete(Duration.ofSeconds(30)), "every data block has arrived: " + lazy.stats());
            st = lazy.stats();
            System.out.println("lazy restore (no prefetch): " + st);
            assertEquals(st.dataBlocks() + 1, st.blocksServed(), "the data blocks and the one unrecorded block read");
            // proportional: the anon slot has pages only in the blocks that were served
            RamSlot anon = gm.ramSlots().get(0);
            try (Pagemap pm = Pagemap.openSelf()) {
                long[] raw = pm.read(anon.slot().userspaceAddr(), (int) anon.slot().npages());
                long present = 0;
                for (long e : raw) if (PagemapEntry.isPresent(e)) present++;
                assertTrue(present <= (st.blocksServed()) * (64 << 10) / P && present < raw.length / 2,
                        present + " present pages of " + raw.length);
            }
        }
    }

    /**
     * A hugetlb slot of the PMD size: a kernel fault anywhere in a huge page brings the whole huge page (hugetlb
     * has no zero page and no partial fill), with the snapshot's bytes where they were recorded and zeros
     * elsewhere, and the restored region is hugetlb again.
     */
    @Test
    void aHugetlbSlotIsServedAHugePageAtATime() throws Exception {
        long pmd = io.guestmem.host.HugePagePools.thpSize();
        io.guestmem.host.HugePageSize size = io.guestmem.host.HugePagePools.sizes().stream()
                .filter(h -> h.bytes() == pmd).findFirst().orElse(null);
        org.junit.jupiter.api.Assumptions.assumeTrue(size != null, "this kernel offers no hugetlb pool of the PMD size " + pmd);
        Path file = dir.resolve("huge.snap");
        Random rnd = new Random(7);
        byte[] first = new byte[(int) P], last = new byte[(int) P];
        rnd.nextBytes(first);
        rnd.nextBytes(last);
        long lastGpa = 2 * pmd - P;
        try (io.guestmem.host.HugePagePools.Reservation res = io.guestmem.host.HugePagePools.raise(size, 2)) {
            try (VmMemory vm = new VmMemory(); HostRegion h = HostRegion.hugetlb(2 * pmd, size).create()) {
                vm.memory().addRam(0, 0, h);
                vm.memory().write(P, first);
                vm.memory().write(lastGpa, last);
                SnapshotWriter.write(vm.memory(), file);
            }
            try (Snapshot s = Snapshot.open(file); LazyRestore lazy = LazyRestore.start(List.of(s), null, false)) {
                assertTrue(lazy.regions().get(0).backing().isHugetlb(), "restored as " + lazy.regions().get(0).backing());
                GuestMemory gm = lazy.memory().memory();
                assertArrayEquals(first, kernelRead(gm, P, (int) P), "a recorded page, through a kernel fault");
                assertArrayEquals(new byte[(int) P], kernelRead(gm, 0, (int) P), "its neighbour in the same huge page: zeros");
                assertEquals(1, lazy.stats().faultsServed(), "one fault served the first huge page: " + lazy.stats());
                assertArrayEquals(last, kernelRead(gm, lastGpa, (int) P), "the last page of the second huge page");
                LazyRestoreStats st = lazy.stats();
                System.out.println("lazy restore of hugetlb " + size + ": " + st);
                assertEquals(2, st.faultsServed(), st.toString());
                assertEquals(0, st.failures(), st.toString());
            }
        }
    }

    @Test
    void thePrefetcherBringsEverythingAndTheRangesAreLetGo() throws Exception {
        byte[][] keep = new byte[40][];
        Path file = snapshotOf(2, keep);
        try (Snapshot s = Snapshot.open(file); LazyRestore lazy = LazyRestore.start(List.of(s), null)) {
            GuestMemory gm = lazy.memory().memory();
            assertArrayEquals(keep[5], kernelRead(gm, gpaOf(5), (int) P), "a fault while the prefetcher runs");
            assertTrue(lazy.awaitComplete(Duration.ofSeconds(30)), lazy.stats().toString());
            LazyRestoreStats st = lazy.stats();
            System.out.println("lazy restore (prefetch): " + st);
            assertTrue(st.prefetched() > 0, st.toString());
            assertEquals(0, st.failures());
            for (int i = 0; i < keep.length; i++) {
                assertArrayEquals(keep[i], kernelRead(gm, gpaOf(i), (int) P), "page " + i + " after completion (kernel)");
                byte[] b = new byte[(int) P];
                gm.read(gpaOf(i), b);
                assertArrayEquals(keep[i], b, "page " + i + " after completion (accessors)");
            }
            assertArrayEquals(new byte[(int) P], kernelRead(gm, 2 * MiB + 3 * P, (int) P), "unregistered: a fresh zero page");
        }
    }

    @Test
    void aCorruptRecordFailsTheAccessNeverHangsAndNeverReadsWrongBytes() throws Exception {
        byte[][] keep = new byte[8][];
        Path file = snapshotOf(3, keep);
        long at;
        try (Snapshot s = Snapshot.open(file)) {
            at = s.runs().stream().filter(r -> !r.zero() && r.slotIndex() == 0).findFirst().orElseThrow().dataOffset();
        }
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(at + 7);
            int b = f.read();
            f.seek(at + 7);
            f.write(b ^ 1);
        }
        try (Snapshot s = Snapshot.open(file); LazyRestore lazy = LazyRestore.start(List.of(s), null, false)) {
            GuestMemory gm = lazy.memory().memory();
            Snapshot.Run bad = s.runs().stream().filter(r -> r.dataOffset() == at).findFirst().orElseThrow();
            long gpa = bad.firstPage() * P;
            LazyRestoreException e = assertThrows(LazyRestoreException.class, () -> gm.readU64(gpa));
            assertTrue(e.getMessage().contains("checksum mismatch"), e.getMessage());
            // the block is poisoned: a kernel access gets EFAULT, not zeros and not a hang
            SyscallException k = assertThrows(SyscallException.class, () -> kernelRead(gm, gpa, 8));
            assertTrue(k.is(Errno.EFAULT), k.getMessage());
            assertEquals(1, lazy.stats().failures());
            // the other slot is unaffected
            byte[] b = new byte[(int) P];
            gm.read(gpaOf(1), b);
            assertArrayEquals(keep[1], b);
        }
    }
}
