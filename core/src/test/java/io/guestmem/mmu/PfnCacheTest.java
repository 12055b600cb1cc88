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

    /**
     * The retry check by rule: the v9 patch's and 6.13's {@code mmu_notifier_retry_cache} retry while any
     * invalidation is in progress, whatever it covers; the library's range rule only for one covering the gfn.
     */
    @Test
    void retryOnAnyInvalidationOrOnlyOnTheGfn() throws Exception {
        HostRegion r = f.own(HostRegion.anonymous(4 * PAGE).create());
        HostRegion elsewhere = f.own(HostRegion.anonymous(4 * PAGE).create());
        Memslot s = f.slot(r, 0);
        f.slot(elsewhere, 0);
        long gpa = (s.baseGfn() + 1) * PAGE;
        try (PfnCache ranged = new PfnCache(f.fp, 0);
             PfnCache v9 = new PfnCache(f.fp, 0, PfnCache.Rule.V9_PATCH);
             PfnCache l613 = new PfnCache(f.fp, 0, PfnCache.Rule.LINUX_6_13)) {
            assertEquals(PfnCache.Rule.LINUX_6_13_GFN_RANGE, ranged.rule(), "the default");
            java.util.concurrent.ExecutorService ex = java.util.concurrent.Executors.newFixedThreadPool(2);
            try {
                java.util.concurrent.Future<PfnError> a, b;
                try (Invalidation inv = f.notifier.invalidate(elsewhere.address(), elsewhere.address() + PAGE)) {
                    assertNull(ranged.activate(gpa, 8), "an unrelated invalidation does not stop the range rule");
                    assertTrue(ranged.check());
                    assertEquals(0, ranged.retries());
                    a = ex.submit(() -> v9.activate(gpa, 8));
                    b = ex.submit(() -> l613.activate(gpa, 8));
                    Thread.sleep(300);
                    assertFalse(a.isDone(), "v9: retries while any invalidation is in progress");
                    assertFalse(b.isDone(), "6.13: retries while any invalidation is in progress");
                    assertTrue(v9.retries() > 0 && l613.retries() > 0, v9.retries() + " " + l613.retries());
                }
                assertNull(a.get(10, java.util.concurrent.TimeUnit.SECONDS), "done once it ended");
                assertNull(b.get(10, java.util.concurrent.TimeUnit.SECONDS));
                assertTrue(v9.check() && l613.check());
                assertEquals(f.pagemapPfn(r.address() + PAGE), v9.pfn(), "the cached pfn is pagemap's");
                assertEquals(v9.pfn(), l613.pfn());
                assertEquals(3, f.fp.references().count(s.baseGfn() + 1), "each valid cache holds the page");
            } finally {
                ex.shutdownNow();
            }
        }
        assertEquals(0, f.fp.references().size());
    }

    /** The cache's own lookup by rule: the patch's is not guarded by the MMU notifier, 6.13's is (it does not pin). */
    @Test
    void lookupGuardByRule() {
        for (PfnCache.Rule rule : PfnCache.Rule.values()) {
            FollowPfnRequest rq = rule.request(7, 1);
            assertTrue(rq.write(), "FOLL_WRITE");
            assertFalse(rq.allowNonRefcountedStructPage());
            assertFalse(rq.pin());
            assertEquals(1, rq.addressSpace());
            assertEquals(rule != PfnCache.Rule.V9_PATCH, rq.guardedByMmuNotifier(), rule.toString());
        }
        io.guestmem.host.Pfnmap.unavailableReason().ifPresent(why -> {
            System.out.println("SKIP lookupGuardByRule (pfnmap part; the request part passed): " + why);
            org.junit.jupiter.api.Assumptions.abort(why);
        });
        // A read-only PFNMAP range under 6.13's follow_pfn, where no remapped pfn is refcounted: the patch's
        // unguarded cache is refused outright (FAULT), 6.13's guarded one reaches the read-only pte (RO_FAULT).
        HostRegion ring = f.own(HostRegion.perfRing(8).create());
        Memslot s = f.slot(ring, 0);
        FollowPfn l613 = f.followPfn(FollowPfnCollaborators.standalone(), FollowPfnOptions.of(KernelRule.LINUX_6_13));
        try (PfnCache v9 = new PfnCache(l613, 0, PfnCache.Rule.V9_PATCH);
             PfnCache guarded = new PfnCache(l613, 0, PfnCache.Rule.LINUX_6_13)) {
            assertEquals(PfnError.FAULT, v9.activate(s.baseGfn() * PAGE, 8));
            assertEquals(PfnError.RO_FAULT, guarded.activate(s.baseGfn() * PAGE, 8));
            assertFalse(v9.check() || guarded.check());
        }
    }
}
