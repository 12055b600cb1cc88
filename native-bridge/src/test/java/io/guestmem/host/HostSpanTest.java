package io.guestmem.host;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.sys.Posix;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import org.junit.jupiter.api.Test;

/** A span over two regions: it reaches both regions' bytes, dies on close, and is made from open regions only. */
class HostSpanTest {
    static final long P = Posix.PAGE_SIZE;

    @Test
    void spanCoversTwoRegionsAndDiesOnClose() {
        try (HostRegion a = HostRegion.anonymous(4 * P).create(); HostRegion b = HostRegion.anonymous(4 * P).create()) {
            HostSpan s = HostSpan.covering(List.of(b, a)); // order does not matter
            long lo = Math.min(a.address(), b.address());
            long hi = Math.max(a.address() + 4 * P, b.address() + 4 * P);
            assertEquals(lo, s.address());
            assertEquals(hi - lo, s.segment().byteSize());
            assertTrue(s.covers(a) && s.covers(b));
            // A byte written through the span is the region's byte, in both regions.
            s.segment().set(ValueLayout.JAVA_LONG, a.address() - lo + P + 8, 0x1122334455667788L);
            s.segment().set(ValueLayout.JAVA_LONG, b.address() - lo + 2 * P, 0x55aa55aa55aa55aaL);
            assertEquals(0x1122334455667788L, a.segment().get(ValueLayout.JAVA_LONG, P + 8));
            assertEquals(0x55aa55aa55aa55aaL, b.segment().get(ValueLayout.JAVA_LONG, 2 * P));
            MemorySegment held = s.segment();
            s.close();
            s.close(); // idempotent
            assertFalse(s.isOpen());
            assertThrows(IllegalStateException.class, () -> held.get(ValueLayout.JAVA_LONG, 0));
            assertEquals(0x1122334455667788L, a.segment().get(ValueLayout.JAVA_LONG, P + 8), "closing a span unmaps nothing");
            assertThrows(IllegalStateException.class, () -> s.renewed(null), "a closed span is not renewed");
            assertThrows(IllegalArgumentException.class, () -> HostSpan.covering(List.of()));
        }
    }

    @Test
    void renewalExtendsUpwardOnlyAndClosedRegionsMakeNoSpan() {
        try (HostRegion a = HostRegion.anonymous(4 * P).create(); HostRegion b = HostRegion.anonymous(4 * P).create()) {
            HostRegion low = a.address() < b.address() ? a : b, high = low == a ? b : a;
            try (HostSpan s = HostSpan.covering(List.of(low)); HostSpan t = s.renewed(high)) {
                assertFalse(s.covers(high));
                assertEquals(low.address(), t.address());
                assertEquals(high.address() + 4 * P - low.address(), t.segment().byteSize());
                assertTrue(t.covers(high) && t.covers(low));
                try (HostSpan u = HostSpan.covering(List.of(high))) {
                    assertThrows(IllegalArgumentException.class, () -> u.renewed(low), "the address would change");
                }
            }
            high.close();
            assertThrows(IllegalStateException.class, () -> HostSpan.covering(List.of(low, high)), "a closed region makes no span");
        }
    }
}
