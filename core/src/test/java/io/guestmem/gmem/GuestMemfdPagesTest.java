package io.guestmem.gmem;

import static io.guestmem.mmu.FollGuest.Verdict.OK;
import static io.guestmem.mmu.FollGuest.Verdict.PRIVATE_NEEDS_FOLL_GUEST;
import static io.guestmem.mmu.FollGuest.Verdict.SHARED_WITHOUT_FOLL_GUEST_ONLY;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.mmu.FollGuest;
import io.guestmem.mmu.Mappability;
import io.guestmem.kvm.KvmAvailable;
import io.guestmem.kvm.KvmVm;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.sys.Posix;
import org.junit.jupiter.api.Test;

/** The FOLL_GUEST rules through the gfn view over real guest_memfd and stand-in regions. */
class GuestMemfdPagesTest {
    static final long PAGE = Posix.PAGE_SIZE;

    @Test
    void gfnViewOverARealGuestMemfdAndAStandIn() {
        KvmAvailable.assume();
        try (KvmVm vm = KvmVm.open();
             GuestMemfdRegion real = GuestMemfdRegion.create(vm, 4 * PAGE);
             GuestMemfdRegion standIn = GuestMemfdRegion.standIn(4 * PAGE)) {
            Memslots memslots = new Memslots();
            for (GuestMemfdRegion r : new GuestMemfdRegion[] {real, standIn}) {
                Memslot m = r.memslot(0, r == real ? 1 : 2, r == real ? 0x100000 : 0x200000);
                memslots.setMemslot(0, m.id(), m.flags(), m.baseGfn() * PAGE, r.size(), m.userspaceAddr(), m.gmemFd(), m.gmemOffset());
            }
            GuestMemfdPages pages = new GuestMemfdPages(memslots);
            pages.register(real);
            pages.register(standIn);
            long realGfn = 0x100000 / PAGE, standInGfn = 0x200000 / PAGE, ordinaryGfn = 0x300000 / PAGE;
            real.toPrivate(PAGE, PAGE);
            standIn.toPrivate(2 * PAGE, PAGE);

            assertEquals(Mappability.ALL, pages.mappability(0, realGfn));
            assertEquals(Mappability.GUEST, pages.mappability(0, realGfn + 1));
            assertEquals(Mappability.GUEST, pages.mappability(0, standInGfn + 2));
            assertEquals(Mappability.ALL, pages.mappability(0, ordinaryGfn), "memory outside guest_memfd is shared");
            Memslot realSlot = memslots.current().byId(1);
            assertTrue(pages.mayAccess(realSlot, realGfn, true));
            assertFalse(pages.mayAccess(realSlot, realGfn + 1, false), "the access policy refuses private gfns");
            assertEquals(PRIVATE_NEEDS_FOLL_GUEST, FollGuest.view(pages.mappability(realSlot, realGfn + 1), false));
            assertEquals(OK, FollGuest.view(pages.mappability(realSlot, realGfn + 1), true));
            assertEquals(SHARED_WITHOUT_FOLL_GUEST_ONLY, FollGuest.view(pages.mappability(realSlot, realGfn), true));

            // References by gfn are the region's: a held one defers the conversion, the put finishes it.
            assertFalse(pages.tryGet(realSlot, realGfn + 1, false));
            assertTrue(pages.tryGet(realSlot, realGfn + 1, true));
            assertTrue(pages.holds(0, realGfn + 1));
            assertEquals(1, real.toShared(PAGE, PAGE).pending());
            assertEquals(Mappability.NONE, pages.mappability(0, realGfn + 1));
            pages.put(realSlot, realGfn + 1, true);
            assertFalse(pages.holds(0, realGfn + 1));
            assertEquals(Mappability.ALL, pages.mappability(0, realGfn + 1));
            Memslot ordinary = new Memslot(0, 3, ordinaryGfn, 1, 0x7000_0000L, 0, -1, 0); // a slot no region backs
            assertEquals(Mappability.ALL, pages.mappability(ordinary, ordinaryGfn));
            assertTrue(pages.tryGet(ordinary, ordinaryGfn, false));
            assertFalse(pages.tryGet(ordinary, ordinaryGfn, true), "FOLL_GUEST never returns ordinary (shared) memory");
        }
    }

    /** The same view without KVM: a stand-in's plain slot is found by its userspace_addr. */
    @Test
    void gfnViewOverAStandIn() {
        try (GuestMemfdRegion standIn = GuestMemfdRegion.standIn(4 * PAGE)) {
            Memslots memslots = new Memslots();
            Memslot m = standIn.memslot(0, 2, 0x200000);
            memslots.setMemslot(0, m.id(), m.flags(), 0x200000, standIn.size(), m.userspaceAddr());
            Memslot slot = memslots.current().byId(2);
            GuestMemfdPages pages = new GuestMemfdPages(memslots);
            pages.register(standIn);
            long gfn = 0x200000 / PAGE;
            standIn.toPrivate(2 * PAGE, PAGE);
            assertEquals(Mappability.ALL, pages.mappability(slot, gfn));
            assertEquals(Mappability.GUEST, pages.mappability(0, gfn + 2));
            assertEquals(PRIVATE_NEEDS_FOLL_GUEST, FollGuest.view(pages.mappability(slot, gfn + 2), false));
            assertFalse(pages.mayAccess(slot, gfn + 2, false), "the access policy refuses private gfns");
            assertTrue(pages.mayAccess(slot, gfn, true));
            assertTrue(pages.tryGet(slot, gfn + 2, true));
            assertEquals(1, standIn.references(2 * PAGE), "the gfn's reference is the region page's");
            assertTrue(pages.holds(0, gfn + 2));
            // The slot goes away with the reference held: the put still finds the page through the slot it names.
            memslots.deleteMemslot(0, 2);
            assertEquals(Mappability.ALL, pages.mappability(0, gfn + 2), "no slot: ordinary");
            pages.put(slot, gfn + 2, true);
            assertEquals(0, standIn.references(2 * PAGE));
            pages.unregister(standIn);
            assertEquals(Mappability.ALL, pages.mappability(slot, gfn + 2), "an unregistered region backs nothing");
        }
    }
}
