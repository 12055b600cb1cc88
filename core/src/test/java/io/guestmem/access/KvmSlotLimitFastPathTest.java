package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import io.guestmem.sys.Posix;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/**
 * KVM's 32764 slots with a gap after each (16-page slots at a 24-page stride, all over one region: hvas may
 * alias, as KVM allows), built one change at a time while a GuestMemory follows: every slot's pages are still
 * served by the fast path (the bucket table did not have to coarsen past the slots' alignment), and reads and
 * writes at the first and last slot and in a gap behave as the layout says, checked in the region itself.
 */
class KvmSlotLimitFastPathTest {
    static final long PAGE = Posix.PAGE_SIZE, SLOT = 16 * PAGE, STRIDE = 24 * PAGE;
    static final int SLOTS = 32764;

    @Test
    void thirtyTwoThousandSlotsWithGapsStayOnTheFastPath() {
        Memslots ms = new Memslots();
        try (HostRegion r = HostRegion.anonymous(SLOT).create(); GuestMemory gm = new GuestMemory(ms)) {
            gm.register(r);
            for (int i = 0; i < SLOTS; i++) ms.setMemslot(0, i, 0, i * STRIDE, SLOT, r.address());
            for (int i : new int[] {0, 1, SLOTS / 2, SLOTS - 1}) {
                long g = i * STRIDE;
                assertTrue(gm.servedFast(g, SLOT, false) || gm.servedFast(g, 8, false), "slot " + i + " read fast");
                assertTrue(gm.servedFast(g + SLOT - 8, 8, true), "slot " + i + " written fast");
                assertFalse(gm.servedFast(g + SLOT, 8, false), "the gap after slot " + i + " is not RAM");
            }
            gm.writeU64((SLOTS - 1) * STRIDE + 8, 0x1234_5678_9abcL);
            assertEquals(0x1234_5678_9abcL, r.segment().get(ValueLayout.JAVA_LONG, 8), "the last slot aliases the region");
            assertEquals(0x1234_5678_9abcL, gm.readU64(8), "and the first slot sees it");
            assertThrows(PartialAccessException.class, () -> gm.readU64(SLOT + 8), "a gap");
        }
    }
}
