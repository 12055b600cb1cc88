package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;

import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The notifier's hva → slots answer (walked, then indexed once a set has answered log2(n) invalidations) is
 * the same as a brute-force walk, in gfn order, over 2000 slots whose hvas overlap and alias (as KVM allows),
 * through 1500 random invalidations with a slot change every 100 (each change makes a new set: walked again,
 * then indexed again).
 */
class HvaIndexTest {
    @Test
    void indexedAnswersAreTheWalksAnswers() {
        Random rnd = new Random(77);
        Memslots ms = new Memslots();
        MmuNotifier n = new MmuNotifier(ms);
        long page = ms.geometry().pageSize();
        int shift = ms.geometry().shift();
        long hvaBase = 0x7f00_0000_0000L;
        for (int id = 0; id < 2000; id++) {
            long npages = 1 + rnd.nextInt(64);
            // gfns never overlap; hvas are random over a small window, so many slots overlap or alias
            ms.setMemslot(0, id, 0, id * 128L * page, npages * page, hvaBase + rnd.nextInt(4096) * page);
        }
        int compared = 0, nonEmpty = 0;
        for (int k = 0; k < 1500; k++) {
            if (k % 100 == 99) {
                int id = rnd.nextInt(2000);
                ms.deleteMemslot(0, id); // a new hva takes a delete and a create, as in KVM
                ms.setMemslot(0, id, 0, id * 128L * page, page, hvaBase + rnd.nextInt(8192) * page);
            }
            long s = hvaBase + (rnd.nextInt(8192) - 64) * page + rnd.nextInt((int) page);
            long e = s + 1 + rnd.nextInt((int) (1 + rnd.nextInt(4) * 16 * page));
            List<Memslot> expected = new ArrayList<>();
            MemslotSet set = ms.current(0);
            for (Memslot m : set.slots()) {
                if (m.userspaceAddr() < e && m.userspaceAddr() + (m.npages() << shift) > s) expected.add(m);
            }
            List<Memslot> got = new ArrayList<>();
            try (Invalidation inv = n.invalidate(s, e)) {
                for (Invalidation.GfnRange r : inv.ranges()) got.add(r.slot());
            }
            assertEquals(expected, got, "invalidation " + k + " of [0x" + Long.toHexString(s) + ", 0x" + Long.toHexString(e) + ")");
            compared++;
            if (!got.isEmpty()) nonEmpty++;
        }
        assertEquals(1500, compared);
        assertEquals(true, nonEmpty > 500, nonEmpty + " invalidations touched a slot");
    }
}
