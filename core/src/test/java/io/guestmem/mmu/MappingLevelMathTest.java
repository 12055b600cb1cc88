package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.PageGeometry;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.constraints.IntRange;
import net.jqwik.api.constraints.LongRange;
import org.junit.jupiter.api.Test;

/** The slot cap (disallow_lpage) and level sizes with 4K, 16K and 64K base pages. */
class MappingLevelMathTest {

    @Test
    void levelSizesPerGeometry() {
        LevelSizes k4 = LevelSizes.of(PageGeometry.K4), k16 = LevelSizes.of(PageGeometry.K16), k64 = LevelSizes.of(PageGeometry.K64);
        assertEquals(2L << 20, k4.pmdSize());
        assertEquals(1L << 30, k4.pudSize());
        assertEquals(32L << 20, k16.pmdSize());
        assertEquals(0, k16.pudSize());
        assertEquals(512L << 20, k64.pmdSize());
        assertEquals(MappingLevel.PMD, k64.maxLevel());
        assertEquals(512, k4.pages(MappingLevel.PMD));
        assertEquals(2048, k16.pages(MappingLevel.PMD));
        assertEquals(8192, k64.pages(MappingLevel.PMD));
        // arm64 hugetlb sizes: 64K (cont-PTE) maps as pages, 32M with 4K pages (cont-PMD) as PMD, 16G with 64K as PMD
        assertEquals(MappingLevel.PAGE, k4.levelFor(64 << 10));
        assertEquals(MappingLevel.PMD, k4.levelFor(32L << 20));
        assertEquals(MappingLevel.PUD, k4.levelFor(1L << 30));
        assertEquals(MappingLevel.PAGE, k16.levelFor(2L << 20));
        assertEquals(MappingLevel.PMD, k16.levelFor(1L << 30));
        assertEquals(MappingLevel.PMD, k64.levelFor(16L << 30));
        LevelSizes host = LevelSizes.host();
        System.out.println("host level sizes: " + host);
        assertEquals(PageGeometry.host(), host.geometry());
    }

    private static Memslot slot(long baseGfn, long npages, long hva, int flags) {
        return new Memslot(0, 1, baseGfn, npages, hva, flags, -1, 0);
    }

    @Test
    void disallowLpageRulesWith16KAnd64K() {
        for (PageGeometry g : new PageGeometry[] {PageGeometry.K4, PageGeometry.K16, PageGeometry.K64}) {
            LevelSizes z = LevelSizes.of(g);
            long pmdPages = z.pages(MappingLevel.PMD);
            long hva = 0x7f00_0000_0000L; // aligned to every block size here
            // aligned slot of 4 blocks: PMD everywhere (PUD too with 4K if the slot held one — it doesn't)
            Memslot ok = slot(8 * pmdPages, 4 * pmdPages, hva, 0);
            for (long gfn = ok.baseGfn(); gfn < ok.endGfn(); gfn += pmdPages / 2) {
                assertEquals(MappingLevel.PMD, HostMappingLevel.slotMaxLevel(ok, gfn, z, false), g + " gfn " + gfn);
            }
            // dirty logging and locked slots: base pages
            assertEquals(MappingLevel.PAGE, HostMappingLevel.slotMaxLevel(slot(8 * pmdPages, 4 * pmdPages, hva,
                    Memslot.LOG_DIRTY_PAGES), 8 * pmdPages, z, false));
            assertEquals(MappingLevel.PAGE, HostMappingLevel.slotMaxLevel(ok, 8 * pmdPages, z, true));
            // misaligned base: the first block is cut, later ones are fine (hva shifted the same way: congruent)
            Memslot base = slot(8 * pmdPages + 3, 4 * pmdPages, hva + 3 * g.pageSize(), 0);
            assertTrue(HostMappingLevel.disallowLpage(base, base.baseGfn(), MappingLevel.PMD, z));
            assertFalse(HostMappingLevel.disallowLpage(base, 9 * pmdPages, MappingLevel.PMD, z));
            // misaligned end: the last block is cut
            Memslot end = slot(8 * pmdPages, 4 * pmdPages - 1, hva, 0);
            assertTrue(HostMappingLevel.disallowLpage(end, end.endGfn() - 1, MappingLevel.PMD, z));
            assertFalse(HostMappingLevel.disallowLpage(end, end.baseGfn(), MappingLevel.PMD, z));
            // gfn and hva not congruent modulo the block: every block
            Memslot skew = slot(8 * pmdPages, 4 * pmdPages, hva + g.pageSize(), 0);
            for (long gfn = skew.baseGfn(); gfn < skew.endGfn(); gfn += pmdPages) {
                assertEquals(MappingLevel.PAGE, HostMappingLevel.slotMaxLevel(skew, gfn, z, false));
            }
        }
        // PUD with 4K pages: a 2G slot at 1G-aligned gfn and hva
        LevelSizes z = LevelSizes.of(PageGeometry.K4);
        Memslot big = slot(1L << 18, 1L << 19, 0x7f00_0000_0000L, 0);
        assertEquals(MappingLevel.PUD, HostMappingLevel.slotMaxLevel(big, (1L << 18) + 12345, z, false));
        Memslot half = slot((1L << 18) + 512, 1L << 19, 0x7f00_0000_0000L, 0); // congruent mod 2M only
        assertEquals(MappingLevel.PMD, HostMappingLevel.slotMaxLevel(half, (1L << 19), z, false));
    }

    /** The cap is exactly "the aligned block lies in the slot and gfn ≡ hva modulo the block". */
    @Property(tries = 500)
    void capMatchesTheDefinition(@ForAll @IntRange(min = 0, max = 2) int geo, @ForAll @LongRange(min = 0, max = 1 << 16) long base,
                                 @ForAll @LongRange(min = 1, max = 1 << 16) long npages, @ForAll @LongRange(min = 0, max = 1 << 16) long hvaPages,
                                 @ForAll @LongRange(min = 0, max = (1 << 16) - 1) long off) {
        PageGeometry g = new PageGeometry[] {PageGeometry.K4, PageGeometry.K16, PageGeometry.K64}[geo];
        LevelSizes z = LevelSizes.of(g);
        Memslot s = slot(base, npages, (1L << 40) + hvaPages * g.pageSize(), 0);
        long gfn = base + off % npages;
        MappingLevel got = HostMappingLevel.slotMaxLevel(s, gfn, z, false);
        long pmd = z.pages(MappingLevel.PMD);
        long hvaFrame = s.userspaceAddr() >>> g.shift();
        long hvaOfGfn = hvaFrame + (gfn - base);
        boolean pmdOk = (gfn % pmd) == (hvaOfGfn % pmd) && (gfn & -pmd) >= base && (gfn & -pmd) + pmd <= base + npages;
        assertEquals(pmdOk, got.number >= MappingLevel.PMD.number, g + " " + s + " gfn " + gfn);
    }
}
