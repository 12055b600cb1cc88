package io.guestmem.gmem;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.mmu.Mappability;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;

/**
 * The guest_memfd page-state machine alone, without a guest_memfd or any syscall: references by view, the
 * deferred final put in both directions, cancelled conversions, misuse, and references racing conversions.
 * The same machine under a real guest_memfd's syscalls: {@link GuestMemfdRegionTest}.
 */
class PageStatesTest {
    static final int SHIFT = 12;
    static final long PAGE = 1L << SHIFT;

    private final List<String> finalPuts = new CopyOnWriteArrayList<>();

    private PageStates states(int pages, Mappability initial) {
        return new PageStates(pages, SHIFT, initial, (page, now) -> finalPuts.add(Thread.currentThread().getName() + ":" + page + ":" + now));
    }

    @Test
    void referencesAreTakenOnlyInTheViewThePageIsIn() {
        PageStates s = states(3, Mappability.ALL);
        s.convert(PAGE, 2 * PAGE, Mappability.GUEST);  // pages 1 and 2 private
        assertTrue(s.tryGet(2, true));                 // page 2 with a private reference...
        s.convert(2 * PAGE, PAGE, Mappability.ALL);    // ...converting back: NONE until its final put
        assertTrue(s.tryGet(0, false));
        assertEquals(Mappability.ALL, s.mappability(0));
        assertEquals(Mappability.GUEST, s.mappability(1));
        assertEquals(Mappability.NONE, s.mappability(2));
        // FOLL_GUEST's rule: a shared page without it, a private page with it, a converting page never.
        assertTrue(s.tryGet(0, false));
        assertFalse(s.tryGet(0, true), "a shared page is not in the private view");
        assertTrue(s.tryGet(1, true));
        assertFalse(s.tryGet(1, false), "a private page is not in the shared view");
        assertFalse(s.tryGet(2, false), "converting: nobody");
        assertFalse(s.tryGet(2, true), "converting: nobody");
        assertEquals(2, s.references(0));
        assertEquals(1, s.references(1));
        assertEquals(1, s.references(2));
        // Pages start shared, or private for a guest_memfd without INIT_SHARED; never converting.
        PageStates priv = states(2, Mappability.GUEST);
        assertEquals(Mappability.GUEST, priv.mappability(1));
        assertFalse(priv.tryGet(1, false));
        assertThrows(IllegalArgumentException.class, () -> states(1, Mappability.NONE));
        assertThrows(IndexOutOfBoundsException.class, () -> s.mappability(3));
        assertTrue(finalPuts.isEmpty());
    }

    @Test
    void aHeldReferenceDefersTheConversionUntilTheFinalPut() throws Exception {
        PageStates s = states(4, Mappability.ALL);
        assertTrue(s.tryGet(1, false));
        assertTrue(s.tryGet(1, false));
        Conversion c = s.convert(0, 4 * PAGE, Mappability.GUEST);
        assertEquals(new Conversion(0, 4 * PAGE, Mappability.GUEST, 3, 1, PAGE), c);
        assertFalse(c.isComplete());
        assertEquals(Mappability.NONE, s.mappability(1));
        assertEquals(Mappability.GUEST, s.pendingTarget(1));
        assertNull(s.pendingTarget(0));
        assertEquals(Mappability.GUEST, s.mappability(0));
        // Converting again towards the same target keeps it pending (nothing completes twice).
        assertEquals(new Conversion(PAGE, PAGE, Mappability.GUEST, 0, 1, PAGE), s.convert(PAGE, PAGE, Mappability.GUEST));

        s.put(1, false);
        assertEquals(Mappability.NONE, s.mappability(1), "one reference still held");
        assertTrue(finalPuts.isEmpty());
        Thread releaser = new Thread(() -> s.put(1, false), "releaser");
        releaser.start();
        releaser.join(30_000);
        assertEquals(Mappability.GUEST, s.mappability(1), "the final put finished the conversion");
        assertNull(s.pendingTarget(1));
        assertEquals(0, s.references(1));
        assertEquals(List.of("releaser:1:GUEST"), finalPuts, "the final put ran once, on the releasing thread");

        // The other direction, with a private (FOLL_GUEST) reference.
        assertTrue(s.tryGet(2, true));
        Conversion back = s.convert(0, 4 * PAGE, Mappability.ALL);
        assertEquals(3, back.completed());
        assertEquals(1, back.pending());
        assertEquals(2 * PAGE, back.firstPendingOffset());
        assertEquals(Mappability.ALL, s.pendingTarget(2));
        s.put(2, true);
        assertEquals(Mappability.ALL, s.mappability(2));
        assertEquals(List.of("releaser:1:GUEST", "main:2:ALL"), finalPuts);
        // Nothing held: the conversion completes at once and no final put runs.
        assertTrue(s.convert(0, 4 * PAGE, Mappability.GUEST).isComplete());
        assertEquals(2, finalPuts.size());
    }

    @Test
    void convertingBackCancelsAPendingConversion() {
        PageStates s = states(2, Mappability.ALL);
        assertTrue(s.tryGet(0, false));
        assertEquals(1, s.convert(0, 2 * PAGE, Mappability.GUEST).pending());
        // Converting to shared a page still waiting to turn private: its references are shared ones, so it is ALL again.
        assertTrue(s.convert(0, 2 * PAGE, Mappability.ALL).isComplete());
        assertEquals(Mappability.ALL, s.mappability(0));
        assertEquals(Mappability.ALL, s.mappability(1));
        assertEquals(1, s.references(0));
        s.put(0, false);
        assertEquals(Mappability.ALL, s.mappability(0));
        assertTrue(finalPuts.isEmpty(), "a cancelled conversion has no final put");
        assertThrows(IllegalStateException.class, () -> s.put(0, false), "a put without a reference is a bug");
        assertThrows(IllegalStateException.class, () -> {
            assertTrue(s.tryGet(1, false));
            s.put(1, true);
        }, "a put in the wrong view is a bug");
        assertThrows(IllegalArgumentException.class, () -> s.convert(0, PAGE, Mappability.NONE));
    }

    /**
     * Threads take and release shared references (as follow_pfn callers and accessors do) while another thread
     * converts the pages back and forth. A reference holder must never see its page private; every conversion
     * must end (the last release finishes pending pages); no reference may be lost.
     */
    @Test
    void racingReferencesAgainstConversions() throws Exception {
        int pages = 16;
        PageStates s = states(pages, Mappability.ALL);
        ConversionRace.Result r = ConversionRace.run(s, pages, 3, 3000, () -> {
            long pending = s.convert(0, pages * PAGE, Mappability.GUEST).pending();
            s.convert(0, pages * PAGE, Mappability.ALL);
            return pending;
        });
        assertTrue(r.referencesTaken() > 0);
        for (int p = 0; p < pages; p++) {
            assertEquals(0, s.references(p), "page " + p + " leaked a reference");
            assertEquals(Mappability.ALL, s.mappability(p), "page " + p + " ended shared (the last conversion)");
        }
    }
}
