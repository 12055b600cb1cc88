package io.guestmem.mmu;

import static io.guestmem.mmu.FollGuest.Verdict.CONVERTING;
import static io.guestmem.mmu.FollGuest.Verdict.OK;
import static io.guestmem.mmu.FollGuest.Verdict.PRIVATE_NEEDS_FOLL_GUEST;
import static io.guestmem.mmu.FollGuest.Verdict.SHARED_WITHOUT_FOLL_GUEST_ONLY;
import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/**
 * The FOLL_GUEST table (the gfn view over real regions: GuestMemfdPagesTest; the write check, which is the
 * READONLY slot row of follow_pfn and not part of the rule: FollowPfnTest.follGuestWriteCheckIsTheReadOnlySlotRow).
 */
class FollGuestTest {
    @Test
    void decisionTable() {
        assertEquals(OK, FollGuest.view(Mappability.ALL, false));
        assertEquals(SHARED_WITHOUT_FOLL_GUEST_ONLY, FollGuest.view(Mappability.ALL, true));
        assertEquals(OK, FollGuest.view(Mappability.GUEST, true));
        assertEquals(PRIVATE_NEEDS_FOLL_GUEST, FollGuest.view(Mappability.GUEST, false));
        for (boolean g : new boolean[] {false, true}) assertEquals(CONVERTING, FollGuest.view(Mappability.NONE, g));
    }
}
