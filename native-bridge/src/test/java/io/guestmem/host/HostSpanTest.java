package io.guestmem.host;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.sys.Posix;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import org.junit.jupiter.api.Test;

/** A span over views of two regions: it reaches both regions' bytes, dies on close, and is made from open views only. */
class HostSpanTest {
    static final long P = Posix.PAGE_SIZE;

    @Test
    void spanCoversViewsOfTwoRegionsAndDiesOnClose() {
        try (HostRegion a = HostRegion.anonymous(4 * P).create(); HostRegion b = HostRegion.anonymous(4 * P).create()) {
            RegionView va = a.view(P, 2 * P), vb = b.view(0, 3 * P);
            HostSpan s = HostSpan.covering(List.of(vb, va)); // order does not matter
            long lo = Math.min(va.segment().address(), vb.segment().address());
            long hi = Math.max(va.segment().address() + 2 * P, vb.segment().address() + 3 * P);
            assertEquals(lo, s.address());
            assertEquals(hi - lo, s.segment().byteSize());
            // A byte written through the span is the region's byte, in both regions.
            s.segment().set(ValueLayout.JAVA_LONG, va.segment().address() - lo + 8, 0x1122334455667788L);
            s.segment().set(ValueLayout.JAVA_LONG, vb.segment().address() - lo + 2 * P, 0x55aa55aa55aa55aaL);
            assertEquals(0x1122334455667788L, a.segment().get(ValueLayout.JAVA_LONG, P + 8));
            assertEquals(0x55aa55aa55aa55aaL, b.segment().get(ValueLayout.JAVA_LONG, 2 * P));
            MemorySegment held = s.segment();
            s.close();
            s.close(); // idempotent
            assertFalse(s.isOpen());
            assertThrows(IllegalStateException.class, () -> held.get(ValueLayout.JAVA_LONG, 0));
            assertEquals(0x1122334455667788L, va.segment().get(ValueLayout.JAVA_LONG, 8), "closing a span unmaps nothing");
            va.close();
            assertThrows(IllegalStateException.class, () -> HostSpan.covering(List.of(va, vb)), "a closed view makes no span");
            assertThrows(IllegalArgumentException.class, () -> HostSpan.covering(List.of()));
        }
    }
}
