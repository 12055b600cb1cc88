package io.guestmem.cli;

import static io.guestmem.procfs.KPageFlag.ANON;
import static io.guestmem.procfs.KPageFlag.BUDDY;
import static io.guestmem.procfs.KPageFlag.COMPOUND_HEAD;
import static io.guestmem.procfs.KPageFlag.COMPOUND_TAIL;
import static io.guestmem.procfs.KPageFlag.HUGE;
import static io.guestmem.procfs.KPageFlag.MMAP;
import static io.guestmem.procfs.KPageFlag.NOPAGE;
import static io.guestmem.procfs.KPageFlag.RESERVED;
import static io.guestmem.procfs.KPageFlag.THP;
import static io.guestmem.procfs.KPageFlag.ZERO_PAGE;
import static io.guestmem.procfs.KPageFlag.maskOf;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import io.guestmem.procfs.PagemapEntry;
import org.junit.jupiter.api.Test;

/** The decision table of {@link PageClassification#refcounted}, row by row. */
class PageClassificationTest {
    static Boolean rc(long flags) {
        return PageClassification.refcounted(0x1234, flags, true);
    }

    @Test
    void refcountedTable() {
        assertEquals(false, rc(maskOf(NOPAGE)));                      // no struct page
        assertEquals(false, rc(maskOf(RESERVED)));                    // PG_reserved
        assertEquals(true, rc(maskOf(ZERO_PAGE, RESERVED)));          // the zero page: the function's exception
        assertEquals(true, rc(maskOf(ZERO_PAGE, THP, COMPOUND_TAIL))); // the huge zero page
        assertEquals(true, rc(maskOf(ANON, MMAP)));                   // ordinary anonymous page
        assertEquals(true, rc(maskOf(HUGE, COMPOUND_HEAD)));          // hugetlb head
        assertEquals(true, rc(maskOf(HUGE, COMPOUND_TAIL)));          // hugetlb tail: via its head
        assertEquals(true, rc(maskOf(THP, ANON, COMPOUND_TAIL)));     // THP tail: via its head
        assertEquals(false, rc(maskOf(NOPAGE, ZERO_PAGE)));           // no struct page wins
        assertEquals(false, rc(maskOf(BUDDY)));                       // free page: get_page_unless_zero fails
    }

    @Test
    void unknownWhenThePfnOrFlagsAreUnknown() {
        assertNull(PageClassification.refcounted(PagemapEntry.PFN_HIDDEN, maskOf(ANON), true));
        assertNull(PageClassification.refcounted(PagemapEntry.PFN_NONE, 0, true));
        assertNull(PageClassification.refcounted(0x1234, 0, false));
    }

    @Test
    void levelLabels() {
        assertEquals("4K", PageClassification.levelLabel(4096));
        assertEquals("2M", PageClassification.levelLabel(2 << 20));
        assertEquals("1G", PageClassification.levelLabel(1 << 30));
        assertEquals("64K", PageClassification.levelLabel(64 << 10));
    }
}
