package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.sys.Mman;

import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import org.junit.jupiter.api.AutoClose;
import org.junit.jupiter.api.Test;

/** The pfn cache over real memory: hit path allocation-free, invalidation, generation, refresh. */
class PfnCacheTest {
    private static final com.sun.management.ThreadMXBean MX =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    @AutoClose // unmaps its regions and closes its readers after each test
    private final Fixture f = new Fixture();
    private static final long PAGE = Fixture.PAGE;


    @Test
    void activateCheckInvalidateRefresh() {
        HostRegion r = f.own(HostRegion.anonymous(8 * PAGE).create());
        Memslot s = f.slot(r, 0);
        long gpa = (s.baseGfn() + 2) * PAGE + 0x40;
        try (PfnCache c = new PfnCache(f.fp, 0)) {
            assertNull(c.activate(gpa, 16));
            assertTrue(c.check());
            assertEquals(f.pagemapPfn(r.address() + 2 * PAGE), c.pfn(), "the cached pfn is pagemap's");
            assertEquals(r.address() + 2 * PAGE + 0x40, c.hva());
            assertTrue(c.writable());
            assertEquals(1, f.fp.references().count(s.baseGfn() + 2), "a valid cache holds its page");
            long old = c.pfn();

            // an invalidation of another page leaves it valid; of its page makes it stale and drops the reference
            try (Invalidation inv = f.notifier.invalidate(r.address() + 5 * PAGE, r.address() + 6 * PAGE)) {
                assertTrue(c.check());
            }
            try (Invalidation inv = f.notifier.invalidate(r.address() + 2 * PAGE, r.address() + 3 * PAGE)) {
                Mman.madvise(r.address() + 2 * PAGE, PAGE, Mman.MADV_DONTNEED);
                assertFalse(c.check(), "stale during the invalidation");
            }
            assertFalse(c.check(), "stale after it");
            assertFalse(f.fp.references().holds(s.baseGfn() + 2));
            assertFalse(f.present(r.address() + 2 * PAGE));
            assertNull(c.refresh());
            assertTrue(c.check());
            assertEquals(f.pagemapPfn(r.address() + 2 * PAGE), c.pfn(), "refresh follows the new page");
            // (the kernel may hand the freed page straight back: the pfn can be the old one; pagemap decides)
            assertTrue(old > 0);

            // a memslot change elsewhere bumps the generation: stale until refreshed
            HostRegion r2 = f.own(HostRegion.anonymous(PAGE).create());
            f.slot(r2, 0);
            assertFalse(c.check());
            assertNull(c.refresh());
            assertTrue(c.check());

            // deleting the slot: invalid, refresh answers NOSLOT
            f.memslots.deleteMemslot(0, s.id());
            assertFalse(c.check());
            assertEquals(PfnError.NOSLOT, c.refresh());
            assertFalse(c.check());
            assertThrows(KvmException.class, () -> c.activate(gpa, PAGE));
        }
        assertEquals(0, f.fp.references().size());
    }

    @Test
    void hitPathAllocatesNothing() {
        HostRegion r = f.own(HostRegion.anonymous(4 * PAGE).create());
        Memslot s = f.slot(r, 0);
        try (PfnCache c = new PfnCache(f.fp, 0)) {
            assertNull(c.activate(s.baseGfn() * PAGE, 8));
            long sum = 0;
            for (int i = 0; i < 200_000; i++) if (c.check()) sum += c.pfn();
            long before = MX.getCurrentThreadAllocatedBytes();
            for (int i = 0; i < 1_000_000; i++) if (c.check()) sum += c.pfn();
            long bytes = MX.getCurrentThreadAllocatedBytes() - before;
            System.out.println("pfn cache: 1e6 hits allocated " + bytes + " B (checksum " + sum + ")");
            assertTrue(bytes < 1024, "the hit path allocated " + bytes + " bytes");
            assertTrue(c.check());
            r.segment().get(ValueLayout.JAVA_BYTE, 0);
        }
    }
}
