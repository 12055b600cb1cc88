package io.guestmem.memslot;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.sys.Posix;
import org.junit.jupiter.api.Test;

class PageGeometryTest {

    @Test
    void hostComesFromSysconf() {
        assertEquals(Posix.PAGE_SIZE, PageGeometry.host().pageSize());
        assertEquals(1L << PageGeometry.host().shift(), PageGeometry.host().pageSize());
    }

    @Test
    void constantsAndArithmetic() {
        assertEquals(12, PageGeometry.K4.shift());
        assertEquals(14, PageGeometry.K16.shift());
        assertEquals(16, PageGeometry.K64.shift());
        assertEquals(~0xffffL, PageGeometry.K64.mask());
        PageGeometry g = PageGeometry.K16;
        assertTrue(g.isAligned(0x8000));
        assertFalse(g.isAligned(0x9000));
        assertEquals(0x1000, g.offset(0x9000));
        assertEquals(2, g.frame(0x9000));
        assertEquals(0x8000, g.address(2));
        assertEquals(0x8000, g.alignDown(0xbfff));
        assertEquals(0xc000, g.alignUp(0x8001));
    }

    @Test
    void rejectsInconsistentOrNonPowerOfTwo() {
        assertThrows(IllegalArgumentException.class, () -> PageGeometry.of(12288));
        assertThrows(IllegalArgumentException.class, () -> PageGeometry.of(0));
        assertThrows(IllegalArgumentException.class, () -> new PageGeometry(4096, 13, ~4095L));
        assertThrows(IllegalArgumentException.class, () -> new PageGeometry(4096, 12, 4095L));
    }
}
