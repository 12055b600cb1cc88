package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotObserver;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

@Timeout(120)
class MmuNotifierTest {

    static final long HVA = 0x7f00_0000_0000L;

    static List<PageGeometry> geometries() {
        return List.of(PageGeometry.K4, PageGeometry.K16, PageGeometry.K64);
    }

    /** Slot 0: gfn 0x100..0x110 at HVA; slot 1: gfn 0x1000..0x1004 at HVA + 0x100 pages. */
    static Memslots twoSlots(PageGeometry g) {
        Memslots ms = new Memslots(Memslots.Config.of(g));
        long ps = g.pageSize();
        ms.setMemslot(0, 0, 0, 0x100 * ps, 0x10 * ps, HVA);
        ms.setMemslot(0, 1, 0, 0x1000 * ps, 4 * ps, HVA + 0x100 * ps);
        return ms;
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void overlappingInvalidationMakesResultsStale(PageGeometry g) {
        long ps = g.pageSize();
        Memslots ms = twoSlots(g);
        MmuNotifier n = new MmuNotifier(ms);
        long seq = n.sequence();
        assertEquals(0, seq);
        assertFalse(n.retry(seq));
        assertFalse(n.retryGfn(0x105, seq));

        // pages 4 and 5 of slot 0, the range given unaligned: rounded out to whole pages
        try (Invalidation inv = n.invalidate(HVA + 4 * ps + 8, HVA + 5 * ps + 1)) {
            assertTrue(inv.affectsGuest());
            assertEquals(List.of(new Invalidation.GfnRange(0, 0x104, 0x106, ms.current().byId(0))), inv.ranges());
            assertEquals(1, n.inProgress());
            assertEquals(0x104, n.rangeStart());
            assertEquals(0x106, n.rangeEnd());
            assertTrue(n.retryGfn(0x104, seq));
            assertTrue(n.retryGfn(0x105, seq));
            assertFalse(n.retryGfn(0x103, seq), "outside the in-flight range, same sequence");
            assertFalse(n.retryGfn(0x106, seq));
            assertFalse(n.retryGfn(0x1000, seq));
            assertTrue(n.retry(seq), "mmu_invalidate_retry ignores the range");
            assertEquals(0, n.sequence(), "the sequence moves at end, not at start");
        }
        assertEquals(0, n.inProgress());
        assertEquals(1, n.sequence());
        // a result taken before the invalidation stays stale after it ended, whatever its gfn
        assertTrue(n.retryGfn(0x104, seq));
        assertTrue(n.retryGfn(0x103, seq));
        assertTrue(n.retry(seq));
        long seq1 = n.sequence();
        assertFalse(n.retryGfn(0x104, seq1));
        assertFalse(n.retry(seq1));
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void hvaRangeNoSlotMapsCountsNothing(PageGeometry g) {
        Memslots ms = twoSlots(g);
        MmuNotifier n = new MmuNotifier(ms);
        List<Invalidation> heard = new ArrayList<>();
        n.addListener(heard::add);
        long seq = n.sequence();
        try (Invalidation inv = n.invalidate(HVA - 0x10 * g.pageSize(), HVA)) {
            assertFalse(inv.affectsGuest());
            assertEquals(0, n.inProgress());
            assertFalse(n.retry(seq));
        }
        assertEquals(seq, n.sequence());
        assertEquals(1, heard.size(), "listeners still hear of it (hva-keyed caches)");
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void nestedInvalidationsMergeTheirRangesUntilTheCountReturnsToZero(PageGeometry g) {
        long ps = g.pageSize();
        Memslots ms = twoSlots(g);
        MmuNotifier n = new MmuNotifier(ms);
        long seq = n.sequence();
        Invalidation a = n.invalidate(HVA, HVA + 2 * ps);                      // gfn 0x100-0x102
        Invalidation b = n.invalidate(HVA + 0x101 * ps, HVA + 0x102 * ps);     // gfn 0x1001
        assertEquals(2, n.inProgress());
        assertEquals(0x100, n.rangeStart());
        assertEquals(0x1002, n.rangeEnd());
        assertTrue(n.retryGfn(0x500, seq), "inside the merged range, as KVM's min/max merge");
        b.close();
        assertEquals(1, n.inProgress());
        assertEquals(1, n.sequence());
        assertEquals(0x1002, n.rangeEnd(), "the range is not shrunk while anything is in progress");
        long seqMid = n.sequence();
        assertTrue(n.retryGfn(0x1001, seqMid));
        assertFalse(n.retryGfn(0x2000, seqMid));
        b.close(); // idempotent
        assertEquals(1, n.inProgress());
        a.close();
        assertEquals(0, n.inProgress());
        assertEquals(2, n.sequence());
        // the next invalidation starts a fresh range
        try (Invalidation c = n.invalidate(HVA + 0x102 * ps, HVA + 0x103 * ps)) {
            assertEquals(0x1002, n.rangeStart());
            assertEquals(0x1003, n.rangeEnd());
            assertFalse(n.retryGfn(0x100, n.sequence()));
        }
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void hvaAliasedByTwoSlotsInvalidatesBoth(PageGeometry g) {
        long ps = g.pageSize();
        Memslots ms = new Memslots(Memslots.Config.of(g));
        ms.setMemslot(0, 0, 0, 0, 8 * ps, HVA);
        ms.setMemslot(1, 0, 0, 0x800 * ps, 8 * ps, HVA);           // SMM address space, same memory
        ms.setMemslot(0, 1, 0, 0x40 * ps, 4 * ps, HVA + 6 * ps);    // partly the same hvas again
        MmuNotifier n = new MmuNotifier(ms);
        try (Invalidation inv = n.invalidate(HVA + 6 * ps, HVA + 7 * ps)) {
            assertEquals(3, inv.ranges().size(), inv.toString());
            assertEquals(6, n.rangeStart());
            assertEquals(0x807, n.rangeEnd());
        }
    }

    @Test
    void gfnInvalidationIsCountedWithoutSlots() {
        Memslots ms = new Memslots(Memslots.Config.of(PageGeometry.K4));
        MmuNotifier n = new MmuNotifier(ms);
        long seq = n.sequence();
        try (Invalidation inv = n.invalidateGfn(0, 0x10, 0x20)) {
            assertFalse(inv.hasHvaRange());
            assertTrue(n.retryGfn(0x1f, seq));
            assertFalse(n.retryGfn(0x20, seq));
        }
        assertTrue(n.retryGfn(0x20, seq));
        assertThrows(IllegalArgumentException.class, () -> n.invalidateGfn(0, 5, 5));
        assertThrows(IllegalArgumentException.class, () -> n.invalidate(0x2000, 0x1000));
        assertThrows(IllegalArgumentException.class, () -> n.invalidate(-4096, 0));
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void memslotChangesInvalidateWhatTheyTakeAway(PageGeometry g) {
        long ps = g.pageSize();
        Memslots ms = twoSlots(g);
        MmuNotifier n = new MmuNotifier(ms);
        List<String> heard = new ArrayList<>();
        n.addListener(new InvalidationListener() {
            public void invalidateRangeStart(Invalidation inv) {
                MemslotChange c = inv.memslotChange();
                heard.add("start " + (c == null ? "hva" : c.kind()) + " " + ranges(inv) + " in progress "
                        + n.inProgress() + " gen " + ms.current().generation());
            }

            public void invalidateRangeEnd(Invalidation inv) {
                heard.add("end seq " + n.sequence() + " gen " + ms.current().generation());
            }
        });

        // CREATE: nothing to invalidate
        long seq = n.sequence();
        ms.setMemslot(0, 2, 0, 0x2000 * ps, 2 * ps, HVA + 0x200 * ps);
        assertEquals(seq, n.sequence());
        assertTrue(heard.isEmpty());

        // FLAGS_ONLY starting dirty logging: invalidated; stopping it: not
        ms.setMemslot(0, 2, Memslot.LOG_DIRTY_PAGES, 0x2000 * ps, 2 * ps, HVA + 0x200 * ps);
        assertTrue(n.retryGfn(0x2001, seq));
        assertEquals(seq + 1, n.sequence());
        ms.setMemslot(0, 2, 0, 0x2000 * ps, 2 * ps, HVA + 0x200 * ps);
        assertEquals(seq + 1, n.sequence());

        // MOVE: old and new gfns; the new set is published between start and end
        long seqMove = n.sequence();
        ms.setMemslot(0, 1, 0, 0x3000 * ps, 4 * ps, HVA + 0x100 * ps);
        assertTrue(n.retryGfn(0x1000, seqMove));
        assertEquals(seqMove + 1, n.sequence());

        // DELETE
        ms.deleteMemslot(0, 0);
        assertEquals(seqMove + 2, n.sequence());
        assertEquals(List.of(
                "start FLAGS_ONLY [0:0x2000-0x2002] in progress 1 gen 3",
                "end seq 1 gen 4",
                "start MOVE [0:0x1000-0x1004, 0:0x3000-0x3004] in progress 1 gen 5",
                "end seq 2 gen 6",
                "start DELETE [0:0x100-0x110] in progress 1 gen 6",
                "end seq 3 gen 7"), heard);
        assertEquals(0, n.inProgress());
    }

    private static String ranges(Invalidation inv) {
        List<String> l = new ArrayList<>();
        for (Invalidation.GfnRange r : inv.ranges()) {
            l.add(r.addressSpace() + ":0x" + Long.toHexString(r.start()) + "-0x" + Long.toHexString(r.end()));
        }
        return l.toString();
    }

    @Test
    void memslotChangesWaitForHvaInvalidationsInFlight() throws Exception {
        PageGeometry g = PageGeometry.K4;
        Memslots ms = twoSlots(g);
        MmuNotifier n = new MmuNotifier(ms);
        // dedicated threads: the owner of an open invalidation may not change memslots (see the next test)
        Invalidation[] open = new Invalidation[1];
        Thread opener = new Thread(() -> open[0] = n.invalidate(HVA, HVA + 0x1000));
        opener.start();
        opener.join();
        long gen = ms.generation();
        CompletableFuture<MemslotChange> delete = new CompletableFuture<>();
        Thread deleter = new Thread(() -> {
            try {
                delete.complete(ms.deleteMemslot(0, 1));
            } catch (Throwable t) {
                delete.completeExceptionally(t);
            }
        });
        deleter.start();
        assertThrows(TimeoutException.class, () -> delete.get(300, TimeUnit.MILLISECONDS),
                "the delete must wait for the hva invalidation to end");
        assertEquals(gen, ms.generation());
        assertSame(ms.current().byId(1), ms.current().findByGfn(0x1000));
        open[0].close(); // from another thread than the one that started it
        assertEquals(MemslotChange.Kind.DELETE, delete.get(30, TimeUnit.SECONDS).kind());
        assertNull(ms.current().byId(1));
    }

    @Test
    void aMemslotChangeInsideTheSameThreadsInvalidationIsRefusedNotDeadlocked() {
        Memslots ms = twoSlots(PageGeometry.K4);
        MmuNotifier n = new MmuNotifier(ms);
        List<String> log = new ArrayList<>();
        ms.addObserver(new MemslotObserver() {
            public void beforeCommit(MemslotChange c) { log.add("before"); }
            public void rolledBack(MemslotChange c) { log.add("rolledBack"); }
        });
        MemslotSet before = ms.current();
        try (Invalidation inv = n.invalidate(HVA, HVA + 0x1000)) {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> ms.deleteMemslot(0, 0));
            assertTrue(e.getMessage().contains("wait for itself"), e.getMessage());
        }
        assertSame(before, ms.current());
        assertEquals(List.of("before", "rolledBack"), log);
        assertEquals(MemslotChange.Kind.DELETE, ms.deleteMemslot(0, 0).kind());
        assertThrows(IllegalStateException.class, () -> new MmuNotifier(ms), "one notifier per Memslots");
    }

    @Test
    void aThrowingListenerEndsTheInvalidation() {
        Memslots ms = twoSlots(PageGeometry.K4);
        MmuNotifier n = new MmuNotifier(ms);
        n.addListener(inv -> {
            throw new IllegalStateException("listener broke");
        });
        long seq = n.sequence();
        assertThrows(IllegalStateException.class, () -> n.invalidate(HVA, HVA + 0x1000));
        assertEquals(0, n.inProgress(), "balanced");
        assertEquals(seq + 1, n.sequence(), "and ended, so results taken before it are stale");
        // memslot changes are not blocked by the aborted invalidation; the listener vetoes the delete
        assertThrows(IllegalStateException.class, () -> ms.deleteMemslot(0, 0));
        assertEquals(0, n.inProgress());
        assertTrue(ms.current().byId(0) != null);
    }
}
