package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.sys.Mman;

import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import org.junit.jupiter.api.AutoClose;
import org.junit.jupiter.api.Test;

/** Batch translation against pagemap, over a range with holes, a read-only slot and a PROT_NONE page. */
class FollowPfnBatchTest {
    private static final com.sun.management.ThreadMXBean MX =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    @AutoClose // unmaps its regions and closes its readers after each test
    private final Fixture f = new Fixture();
    private static final long PAGE = Fixture.PAGE;


    @Test
    void batchEqualsPagemapWithFewSyscalls() {
        int n = 1024;
        HostRegion r = f.own(HostRegion.anonymous(n * PAGE).create());
        Memslot s = f.slot(r, 0);
        for (int i = 0; i < n; i += 3) r.segment().set(ValueLayout.JAVA_BYTE, i * PAGE, (byte) 1); // every third page
        FollowPfnBatch b = new FollowPfnBatch(f.fp, 256);
        long[] out = new long[n + 8];
        long seq = b.translate(0, s.baseGfn() - 4, n + 8, false, out, 0);
        assertTrue(!f.notifier.retry(seq));
        assertEquals(KvmPfn.NOSLOT, out[0]);
        assertEquals(KvmPfn.NOSLOT, out[n + 7]);
        long[] pm = f.pagemap.read(r.address(), n);
        for (int i = 0; i < n; i++) {
            assertEquals(f.pagemap.pfnOf(pm[i]), out[i + 4], "gfn +" + i);
        }
        System.out.println("batch of " + n + " pages (read, 2/3 not present): " + b.populateCalls() + " populate calls, "
                + b.pagemapReads() + " pagemap reads");
        assertTrue(b.populateCalls() <= 4 * 342, "one populate per run of holes");
        assertTrue(b.pagemapReads() <= 8, "one or two pagemap reads per 256-page chunk");

        long[] w = new long[n];
        long p0 = b.populateCalls();
        b.translate(0, s.baseGfn(), n, true, w, 0);
        assertEquals(4, b.populateCalls() - p0, "a write batch: one MADV_POPULATE_WRITE per chunk");
        pm = f.pagemap.read(r.address(), n);
        for (int i = 0; i < n; i++) assertEquals(f.pagemap.pfnOf(pm[i]), w[i]);
        // warm: translating again allocates nothing
        for (int k = 0; k < 3000; k++) b.translate(0, s.baseGfn(), n, k % 2 == 0, w, 0); // let C2 compile the path
        long before = MX.getCurrentThreadAllocatedBytes();
        for (int k = 0; k < 20; k++) b.translate(0, s.baseGfn(), n, false, w, 0);
        long bytes = MX.getCurrentThreadAllocatedBytes() - before;
        System.out.println("20 warm batches of " + n + " allocated " + bytes + " B");
        // Nothing per page (kpageflags per scattered pfn used to cost ~150 B/page). Once C2 has compiled the
        // bridge's pread this is 0; before that the bridge's heap-slice costs ~150 B per pread (4 per batch).
        assertTrue(bytes < 20L * n, "warm batches allocated " + bytes + " B: per-page garbage");
    }

    @Test
    void errorsComeFromTheDecisionTable() {
        HostRegion r = f.own(HostRegion.anonymous(16 * PAGE).create());
        HostRegion ro = f.own(HostRegion.anonymous(4 * PAGE).create());
        Memslot s = f.slot(r, 0);
        Memslot rs = f.slot(ro, Memslot.READONLY);
        try (Invalidation inv = f.notifier.invalidate(r.address() + 5 * PAGE, r.address() + 6 * PAGE)) {
            Mman.mprotect(r.address() + 5 * PAGE, PAGE, Mman.PROT_NONE);
        }
        FollowPfnBatch b = new FollowPfnBatch(f.fp, 64);
        long[] out = new long[16];
        b.translate(0, s.baseGfn(), 16, true, out, 0);
        assertEquals(KvmPfn.ERR_FAULT, out[5], "PROT_NONE page");
        for (int i = 0; i < 16; i++) if (i != 5) assertEquals(f.pagemapPfn(r.address() + i * PAGE), out[i]);
        long[] ro4 = new long[4];
        b.translate(0, rs.baseGfn(), 4, true, ro4, 0);
        for (long v : ro4) assertEquals(KvmPfn.ERR_RO_FAULT, v);
        f.fp.poison().poisonGfn(0, s.baseGfn() + 3);
        b.translate(0, s.baseGfn(), 4, false, ro4, 0);
        assertEquals(KvmPfn.ERR_HWPOISON, ro4[3]);
        assertEquals(0, f.fp.references().size(), "a batch keeps no references");
    }
}
