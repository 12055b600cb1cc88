package io.guestmem.lock;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.procfs.Smaps;
import io.guestmem.procfs.VmFlag;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;

import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@link MlockPinning} on real memory, checked against the kernel's VmLck and the VMAs' VM_LOCKED flag: a pin
 * is all or nothing, and the holds of two pins over one range are counted.
 */
class MlockPinningTest {
    static final long PS = Posix.PAGE_SIZE;
    static final int PAGES = 64;

    MlockPinning pinning;
    long baseline;
    long mapped;     // [mapped, mapped + PAGES pages): readable, writable anonymous memory
    long hole;       // the PAGES pages right after it: unmapped

    @BeforeEach
    void setUp() {
        pinning = new MlockPinning(new MemlockAccount(PS));
        baseline = vmLck();
        // Two halves, the second unmapped again: a range over both cannot be locked past its first half.
        mapped = Mman.mmap(0, 2 * PAGES * PS, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        hole = mapped + PAGES * PS;
        Mman.munmap(hole, PAGES * PS);
    }

    @AfterEach
    void tearDown() {
        Mman.munmap(mapped, PAGES * PS);
        assertEquals(baseline, vmLck(), "VmLck back at its baseline");
    }

    static long vmLck() {
        return ProcStatus.self().vmLck();
    }

    boolean locked(long addr) {
        return Smaps.vmaOf(addr).has(VmFlag.LOCKED);
    }

    @Test
    void aRangeWhoseSecondHalfCannotBeLockedLeavesNothingLocked() {
        HvaRange both = new HvaRange(mapped, hole + PAGES * PS);

        // The control: the kernel's own mlock of this range locks the first half, then says ENOMEM. This is
        // what a pin that rolled back only the calls that succeeded would leave behind.
        SyscallException raw = assertThrows(SyscallException.class, () -> Mman.mlock(both.start(), both.length()));
        assertEquals(Errno.ENOMEM.number, raw.errno(), raw.getMessage());
        long leftByTheKernel = vmLck() - baseline;
        boolean firstHalfLocked = locked(mapped);
        System.out.println("control: a failed mlock over " + both + " left " + leftByTheKernel + " bytes in VmLck, first half "
                + (firstHalfLocked ? "VM_LOCKED" : "not locked"));
        try {
            Mman.munlock(both.start(), both.length());
        } catch (SyscallException expected) {
            assertEquals(Errno.ENOMEM.number, expected.errno(), "munlock over the hole: ENOMEM after unlocking the first half");
        }
        assertEquals(baseline, vmLck());
        assertTrue(firstHalfLocked && leftByTheKernel == PAGES * PS,
                "this kernel locks the VMAs before a hole and then fails: the case the pin must roll back");

        try (MlockPinning.Pin pin = pinning.begin("test", List.of(both), both.pages())) {
            KvmException e = assertThrows(KvmException.class, pin::mlock);
            assertEquals(Errno.ENOMEM, e.errno(), e.getMessage());
            assertTrue(e.getCause() instanceof SyscallException, "the kernel's refusal is the cause");
            assertEquals(baseline, vmLck(), "nothing of the failed range stays locked");
            assertFalse(locked(mapped), "the first half is not VM_LOCKED");
        }
        assertTrue(pinning.isEmpty());
    }

    @Test
    void aFailureInTheSecondRangeUnlocksTheFirst() {
        // Two mlock calls: the first succeeds, the second fails at the hole.
        HvaRange a = new HvaRange(mapped, mapped + 8 * PS);
        HvaRange b = new HvaRange(mapped + 16 * PS, hole + PS);
        try (MlockPinning.Pin pin = pinning.begin("test", List.of(a, b), a.pages() + b.pages())) {
            assertEquals(List.of(a, b), pin.toMlock());
            assertThrows(KvmException.class, pin::mlock);
            assertEquals(baseline, vmLck(), "neither the first range (locked before the second failed) nor the part of the second the kernel locked stays locked");
            assertFalse(locked(a.start()));
            assertFalse(locked(b.start()));
        }
    }

    @Test
    void anUncommittedPinIsUndoneAndACommittedOneHeldUntilReleased() {
        HvaRange r = new HvaRange(mapped, mapped + 16 * PS);
        try (MlockPinning.Pin pin = pinning.begin("test", List.of(r), r.pages())) {
            pin.mlock();
            assertEquals(baseline + r.length(), vmLck(), "locked");
            pin.checkCharge();
            // not committed: a later step of the caller failed
        }
        assertEquals(baseline, vmLck(), "closing an uncommitted pin munlocks it");

        MlockPinning.Pin one = pinning.begin("one", List.of(r), r.pages());
        one.mlock();
        one.checkCharge();
        one.commit();
        one.close(); // nothing: committed
        assertEquals(baseline + r.length(), vmLck());
        assertEquals(0, one.uncountedPages());

        HvaRange wider = new HvaRange(mapped, mapped + 32 * PS);
        MlockPinning.Pin two = pinning.begin("two", List.of(wider), wider.pages());
        assertEquals(List.of(new HvaRange(mapped + 16 * PS, mapped + 32 * PS)), two.toMlock(), "only what no hold has");
        assertEquals(16, two.uncountedPages(), "the shared part is charged, not counted by VmLck");
        two.mlock();
        two.commit();
        assertEquals(baseline + wider.length(), vmLck());

        pinning.release(one.hold(), one.uncountedPages());
        assertEquals(baseline + wider.length(), vmLck(), "the second hold keeps the shared part locked");
        assertTrue(locked(mapped));
        pinning.release(two.hold(), two.uncountedPages());
        assertEquals(baseline, vmLck());
        assertTrue(pinning.isEmpty());
        assertEquals(0, pinning.account().uncountedPages());
    }

    @Test
    void hvaRangesAreValidated() {
        assertThrows(IllegalArgumentException.class, () -> new HvaRange(PS, PS), "empty");
        assertThrows(IllegalArgumentException.class, () -> new HvaRange(2 * PS, PS), "reversed");
        assertThrows(IllegalArgumentException.class, () -> new HvaRange(1, PS), "unaligned start");
        assertThrows(IllegalArgumentException.class, () -> HvaRange.of(0, PS + 1), "unaligned length");
        assertThrows(IllegalArgumentException.class, () -> HvaRange.of(Long.MAX_VALUE - PS + 1, 2 * PS), "overflow");
        HvaRange r = HvaRange.of(4 * PS, 3 * PS);
        assertEquals(3, r.pages());
        assertEquals(7 * PS, r.end());
        assertEquals(new HvaRange(5 * PS, 7 * PS), r.clip(5 * PS, 100 * PS));
        assertEquals(null, r.clip(7 * PS, 8 * PS));
        assertTrue(r.overlaps(HvaRange.of(6 * PS, PS)));
        assertFalse(r.overlaps(HvaRange.of(7 * PS, PS)));
    }
}
