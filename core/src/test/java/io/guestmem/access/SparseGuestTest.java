package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.procfs.Maps;
import io.guestmem.procfs.Overcommit;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.Smaps;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.Rlimit;
import io.guestmem.mmu.FollowPfnRequest;
import io.guestmem.mmu.FollowPfnResult;
import io.guestmem.snapshot.SnapshotInfo;
import io.guestmem.snapshot.SnapshotWriter;
import io.guestmem.vm.VmMemory;
import java.io.IOException;
import java.nio.file.Path;
import java.util.TreeSet;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A 1 TiB guest on a host with far less memory (reads, writes, dirty pages, follow_pfn and a snapshot, each
 * costing what was touched): one memslot of 1 TiB at gpa 4 GiB over a no-reserve anonymous
 * region (a reserved one is refused under the default overcommit heuristic, which rejects any one charge larger
 * than RAM + swap: see NoReserveTest). The slot machinery must take a slot that big: KVM_MEM_MAX_NR_PAGES is
 * 2^31 - 1 pages (8 TiB - 4 KiB on 4K pages), the fast path's bucket table stays small (the slot is aligned to
 * 4 GiB: 256 buckets), and the VMM's dirty bitmap of the slot is one bit per page (2^28 pages: 32 MiB of heap on
 * 4K pages, and as much again for each collected {@link DirtyPages}).
 */
class SparseGuestTest {
    static final long P = Posix.PAGE_SIZE;
    static final long GiB = 1L << 30;
    static final long TiB = 1L << 40;
    static final long BASE = 4 * GiB;

    private static void skip(String why) {
        System.out.println("SKIP SparseGuestTest: " + why);
        Assumptions.abort(why);
    }

    @Test
    void aTebibyteGuestInOneSlotAtFourGiB(@TempDir Path dir) throws IOException {
        Overcommit oc = Overcommit.now();
        if (!oc.honorsNoReserve())
            skip("vm.overcommit_memory=2: the kernel ignores MAP_NORESERVE and would charge the whole 1 TiB against "
                    + "CommitLimit (" + Fmt.size(oc.commitLimit()) + "), so no 1 TiB region can be mapped");
        try (Pagemap pm = Pagemap.openSelf()) {
            if (pm.userAddressLimit() < 4 * TiB) skip("the user address space ends at " + Fmt.hex(pm.userAddressLimit()));
        }
        Rlimit.Limit as = Rlimit.getrlimit(Rlimit.RLIMIT_AS);
        if (!as.softUnlimited() && as.soft() < 2 * TiB) skip("RLIMIT_AS is " + as + ": no room for 1 TiB");

        HostRegion ram = HostRegion.anonymous(TiB).create();
        long spanStart = ram.address() - ram.guardBytes(), spanEnd = ram.address() + ram.size() + ram.guardBytes();
        VmMemory vm = new VmMemory();
        GuestMemory gm = vm.memory();
        try {
            // Base pages whatever the THP setting, so that each page written costs exactly one page.
            Mman.madvise(ram.address(), ram.size(), Mman.MADV_NOHUGEPAGE);
            Memslot slot = gm.addRam(0, BASE, ram);
            int shift = gm.memslots().geometry().shift();
            assertEquals(TiB >>> shift, slot.npages());
            assertTrue(slot.npages() <= Memslots.MAX_NR_PAGES, "KVM_MEM_MAX_NR_PAGES");
            long denseBytes = (long) DirtyBitmap.wordsFor(slot.npages()) * Long.BYTES;
            assertEquals(slot.npages(), gm.dirtyBitmap(0).npages());
            assertEquals(0, gm.dirtyBitmap(0).chunksAllocated(), "a clean bitmap holds no chunk");

            // u64s at the first and last pages and between (one at the very last 8 bytes), an unaligned one
            // across a page boundary deep inside the slot, and a bulk write across a 4 GiB bucket boundary
            // (the fast path's buckets here), which takes the checked path.
            long[] u64At = {0, 8 * P + 16, GiB + 5 * P, 512 * GiB, 600 * GiB + P - 4, 1000 * GiB + 123 * P, TiB - P, TiB - 8};
            TreeSet<Long> pages = new TreeSet<>();
            for (long o : u64At) {
                gm.writeU64(BASE + o, 0xC0FFEE_0000_0000L ^ o);
                pages.add((BASE + o) >>> shift);
                pages.add((BASE + o + 7) >>> shift);
            }
            byte[] bulk = new byte[16];
            for (int i = 0; i < bulk.length; i++) bulk[i] = (byte) (i + 1);
            long bulkAt = BASE + 8 * GiB - 8;
            gm.write(bulkAt, bulk);
            pages.add(bulkAt >>> shift);
            pages.add((bulkAt + 15) >>> shift);

            for (long o : u64At) assertEquals(0xC0FFEE_0000_0000L ^ o, gm.readU64(BASE + o), "gpa " + Fmt.hex(BASE + o));
            byte[] back = new byte[16];
            gm.read(bulkAt, back);
            assertArrayEquals(bulk, back);
            assertEquals(0x0807060504030201L, gm.readU64(bulkAt));

            // The slot's edges: RAM ends where the slot does.
            assertEquals(GuestMemoryException.Reason.NOT_RAM,
                    assertThrows(GuestMemoryException.class, () -> gm.readU64(BASE + TiB)).reason());
            assertEquals(GuestMemoryException.Reason.NOT_RAM,
                    assertThrows(GuestMemoryException.class, () -> gm.writeU64(BASE - 8, 1)).reason());

            // the dirty log follows the writes: a chunk per region written, not the slot's 2^28 bits
            int chunks = gm.dirtyBitmap(0).chunksAllocated();
            assertTrue(chunks <= pages.size(), chunks + " chunks for " + pages.size() + " pages");
            System.out.println("1 TiB slot: " + slot.npages() + " pages; dirty log " + chunks + " chunks ("
                    + Fmt.size((long) chunks * DirtyBitmap.CHUNK_WORDS * Long.BYTES) + ") for " + pages.size()
                    + " pages written, where a dense one would be " + Fmt.size(denseBytes));
            DirtyPages d = gm.collectDirty(0);
            assertTrue(d.words().words() <= pages.size(), "the harvest keeps the non-zero words only: " + d.words().words());
            assertEquals(BASE >>> shift, d.baseGfn());
            assertEquals(pages, gfns(d.gfns()), "collectDirty: exactly the pages written");
            assertEquals(pages.size(), d.fromVmm());
            assertTrue(gm.collectDirty(0).isEmpty(), "a second collect finds nothing new");

            // The kernel's view: the 1 TiB guest costs the pages written (the reads only touched those).
            assertEquals(pages.size() * P, Smaps.vmaOf(ram.address()).rss(), "Rss of the 1 TiB region");

            // follow_pfn over the touched pages: each gfn's hva, and the pfn the kernel's pagemap has for it
            try (Pagemap pm = Pagemap.openSelf()) {
                for (long gfn : pages) {
                    FollowPfnResult r = vm.followPfn().follow(FollowPfnRequest.read(gfn));
                    assertTrue(r.ok(), "follow_pfn of gfn " + Fmt.hex(gfn) + ": " + r);
                    long hva = ram.address() + ((gfn << shift) - BASE);
                    assertEquals(hva, r.hva());
                    if (pm.pfnVisible()) assertEquals(pm.pfnOf(pm.read(hva, 1)[0]), r.pfn(), "gfn " + Fmt.hex(gfn));
                    vm.followPfn().releaseFaultinPage(r, false, false);
                }
                assertEquals(java.util.List.of(), vm.followPfn().leakReports());
            }

            // a snapshot of the 1 TiB guest: the touched pages, nothing else, and a file of about their size
            long t0 = System.nanoTime();
            SnapshotInfo info = SnapshotWriter.write(gm, dir.resolve("tib.snap"));
            System.out.println("snapshot of the 1 TiB guest: " + info.pagesSaved() + " pages, " + info.bytesWritten()
                    + " bytes, " + info.untouchedPages() + " untouched, " + String.format("%.1f ms", (System.nanoTime() - t0) / 1e6));
            assertEquals(pages.size(), info.pagesSaved() + info.zeroPages(), "the pages written, and only those");
            assertEquals(slot.npages() - pages.size(), info.untouchedPages());
            assertTrue(info.bytesWritten() < pages.size() * P + (1 << 20), "the file holds the data, not 1 TiB: " + info);
            assertEquals(pages.size() * P, Smaps.vmaOf(ram.address()).rss(), "taking the snapshot touched nothing more");
        } finally {
            vm.close();
            ram.close();
        }
        assertTrue(Maps.overlapping(0, spanStart, spanEnd).isEmpty(), "the 1 TiB mapping is gone from /proc/self/maps");
    }

    private static TreeSet<Long> gfns(long[] a) {
        TreeSet<Long> s = new TreeSet<>();
        for (long g : a) s.add(g);
        return s;
    }
}
