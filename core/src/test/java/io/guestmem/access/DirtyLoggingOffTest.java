package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/**
 * A {@link GuestMemory} built with {@link DirtyLogging#OFF}, on real memory: every kind of write lands (read
 * back through the host region itself, and pagemap shows the pages the writes faulted in), nothing is
 * recorded, and every question about the log is an IllegalStateException naming the setting, also after a
 * slot's MOVE and for a slot created later. The default stays ON.
 */
class DirtyLoggingOffTest {
    static final long P = io.guestmem.sys.Posix.PAGE_SIZE;

    @Test
    void writesLandAndNothingIsRecordedOrClaimed() throws Exception {
        try (HostRegion r = HostRegion.anonymous(64 * P).create(); HostRegion later = HostRegion.anonymous(8 * P).create();
             Pagemap pm = Pagemap.openSelf()) {
            Memslots ms = new Memslots();
            try (GuestMemory gm = new GuestMemory(ms, 0, PageAccessPolicy.ALLOW_ALL, DirtyLogging.OFF)) {
                gm.addRam(0, 0, r);
                gm.writeU64(0, 0x1122334455667788L);                 // fast path, typed
                gm.writeU32Release(P + 4, 0xabcdef01);               // handle path, ordered
                gm.write(2 * P + 100, new byte[] {9, 8, 7});          // bulk
                gm.fill(3 * P, 2 * P, (byte) 0x5a);                  // spans two pages
                gm.slice(6 * P, 16).write(0, new byte[] {1, 2});      // zero-copy slice
                assertEquals(5, gm.getAndAddU64(7 * P, 5) + 5);       // atomic

                var seg = r.segment();
                assertEquals(0x1122334455667788L, seg.get(ValueLayout.JAVA_LONG_UNALIGNED, 0));
                assertEquals(0xabcdef01, seg.get(ValueLayout.JAVA_INT_UNALIGNED, P + 4));
                assertEquals(7, seg.get(ValueLayout.JAVA_BYTE, 2 * P + 102));
                assertEquals(0x5a, seg.get(ValueLayout.JAVA_BYTE, 5 * P - 1));
                assertEquals(2, seg.get(ValueLayout.JAVA_BYTE, 6 * P + 1));
                assertEquals(5, seg.get(ValueLayout.JAVA_LONG_UNALIGNED, 7 * P));
                long[] raw = pm.read(r.address(), 9);
                for (int p : new int[] {0, 1, 2, 3, 4, 6, 7}) assertTrue(PagemapEntry.isPresent(raw[p]), "page " + p + " written, so present");
                for (int p : new int[] {5, 8}) assertFalse(PagemapEntry.isPresent(raw[p]), "page " + p + " was not touched");

                DirtyBitmap log = gm.dirtyBitmap(0);
                assertFalse(log.records());
                assertOff(() -> gm.collectDirty(0), "collect");
                assertOff(() -> gm.pagesToSend(s -> null), "collect");
                assertOff(() -> log.count(), "count");
                assertOff(() -> log.isDirty(0), "isDirty");
                assertOff(() -> log.getAndClear(), "getAndClear");
                gm.markDirty(0, P); // records nothing, refuses nothing: a write the API did not see
                assertThrows(IndexOutOfBoundsException.class, () -> log.mark(64), "bounds are still checked");

                // a MOVE keeps the slot's log (as KVM keeps its bitmap), so still off; a new slot's is off too
                ms.setMemslot(0, 0, 0, 1L << 30, r.size(), r.address());
                gm.writeU64((1L << 30) + 8 * P, 1);
                assertFalse(gm.dirtyBitmap(0).records());
                gm.addRam(1, 1L << 32, later);
                gm.writeU8(1L << 32, 1);
                assertFalse(gm.dirtyBitmap(1).records());
                assertOff(() -> gm.collectDirty(1), "collect");
            }
            try (GuestMemory on = new GuestMemory(ms)) {
                on.register(later);
                on.writeU8(1L << 32, 2);
                assertTrue(on.dirtyBitmap(1).records(), "the default is ON");
                assertEquals(1, on.collectDirty(1).gfns().length);
            }
        }
    }

    static void assertOff(org.junit.jupiter.api.function.Executable e, String op) {
        IllegalStateException x = assertThrows(IllegalStateException.class, e);
        assertTrue(x.getMessage().contains(op) && x.getMessage().contains("DirtyLogging.OFF"), x.getMessage());
    }
}
