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

import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.host.Pfnmap;
import io.guestmem.host.Prefault;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.Smaps;
import io.guestmem.sys.Posix;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The decision table of {@link PageClassification#refcounted}, row by row, and {@link PageClassification#backing}
 * naming real VMAs with the library's own {@link io.guestmem.host.Backing} labels.
 */
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

    @Test
    void aVmaOfEachBackingIsNamedWithThatBackingsLabel() {
        long p = Posix.PAGE_SIZE;
        List<HostRegion> regions = new ArrayList<>();
        try {
            regions.add(HostRegion.anonymous(4 * p).prefault(Prefault.Mode.WRITE).create());
            regions.add(HostRegion.anonymousShared(4 * p).prefault(Prefault.Mode.WRITE).create());
            regions.add(HostRegion.thp(Math.max(p, HugePagePools.thpSize())).create());
            regions.add(HostRegion.memfd(4 * p).create());
            regions.add(HostRegion.secret(4 * p).prefault(Prefault.Mode.WRITE).create());
            if (Pfnmap.unavailableReason().isEmpty()) regions.add(HostRegion.perfRing(8).create());
            for (HostRegion r : regions) {
                String named = PageClassification.backing(Smaps.vmaOf(r.address()));
                System.out.println(r.backing() + " -> inspect names it " + named);
                assertEquals(r.backing().label(), named, r.toString());
            }
        } finally {
            regions.forEach(HostRegion::close);
        }
    }
}
