package io.guestmem.mmu;

import static io.guestmem.mmu.FollGuest.Verdict.CONVERTING;
import static io.guestmem.mmu.FollGuest.Verdict.NOT_WRITABLE;
import static io.guestmem.mmu.FollGuest.Verdict.OK;
import static io.guestmem.mmu.FollGuest.Verdict.PRIVATE_NEEDS_FOLL_GUEST;
import static io.guestmem.mmu.FollGuest.Verdict.SHARED_WITHOUT_FOLL_GUEST_ONLY;
import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** The FOLL_GUEST table (the gfn view over real regions: GuestMemfdPagesTest). */
class FollGuestTest {
    @Test
    void decisionTable() {
        assertEquals(OK, FollGuest.check(Mappability.ALL, false, false, true));
        assertEquals(SHARED_WITHOUT_FOLL_GUEST_ONLY, FollGuest.check(Mappability.ALL, true, false, true));
        assertEquals(OK, FollGuest.check(Mappability.GUEST, true, false, true));
        assertEquals(PRIVATE_NEEDS_FOLL_GUEST, FollGuest.check(Mappability.GUEST, false, false, true));
        for (boolean g : new boolean[] {false, true}) assertEquals(CONVERTING, FollGuest.check(Mappability.NONE, g, true, true));
        // The write check is orthogonal: private or not, a read-only page is not mapped writable...
        assertEquals(NOT_WRITABLE, FollGuest.check(Mappability.GUEST, true, true, false));
        assertEquals(NOT_WRITABLE, FollGuest.check(Mappability.ALL, false, true, false));
        // ...is mapped readable, and a writable one writable.
        assertEquals(OK, FollGuest.check(Mappability.GUEST, true, false, false));
        assertEquals(OK, FollGuest.check(Mappability.GUEST, true, true, true));
        // ...and it never turns a refused view into OK.
        assertEquals(PRIVATE_NEEDS_FOLL_GUEST, FollGuest.check(Mappability.GUEST, false, true, false));
    }
}
