package io.guestmem.lock;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.sys.Errno;
import io.guestmem.sys.IoUring;
import io.guestmem.sys.IovecArray;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * {@link LongTermPinning} and {@link IoUring} on real memory, checked against the kernel's VmPin: a pin is all or
 * nothing, a range is split into buffers and tables as the registration limits demand, and the kernel's own
 * limits (1 GiB a buffer, 16384 buffers a table, one table a ring, writable pages only) answer as documented.
 */
class LongTermPinningTest {
    static final long PS = Posix.PAGE_SIZE;
    static final int PAGES = 64;

    long region;   // PAGES writable pages, written
    long pinBaseline;

    @BeforeEach
    void setUp() {
        pinBaseline = vmPin();
        region = Mman.mmap(0, PAGES * PS, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        MemorySegment s = MemorySegment.ofAddress(region).reinterpret(PAGES * PS);
        for (int i = 0; i < PAGES; i++) s.set(ValueLayout.JAVA_LONG, i * PS, i + 1);
    }

    @AfterEach
    void tearDown() {
        Mman.munmap(region, PAGES * PS);
        assertEquals(pinBaseline, vmPin(), "VmPin back at its baseline");
    }

    static long vmPin() {
        return ProcStatus.self().vmPin();
    }

    /** What a long-term pin of {@code bytes} adds to VmPin on this kernel (0 where it does not show them). */
    static long shown(long bytes) {
        return VmPinAccounting.shownBytes(bytes);
    }

    static long[] pfns(long addr, int pages) {
        try (Pagemap pm = Pagemap.openSelf()) {
            long[] raw = pm.read(addr, pages);
            for (int i = 0; i < raw.length; i++) raw[i] = pm.pfnOf(raw[i]);
            return raw;
        }
    }

    @Test
    void aRangeIsSplitIntoBuffersAndTablesAndVmPinCountsItExactly() {
        // 4 pages a buffer, 4 buffers a table: 64 pages take 16 buffers in 4 rings.
        LongTermPinning p = new LongTermPinning(new MemlockAccount(PS), 4 * PS, 4);
        long[] before = pfns(region, PAGES);
        LongTermPinning.Held held;
        try (LongTermPinning.Pin pin = p.begin("test", region, region + PAGES * PS, PAGES)) {
            pin.pin();
            pin.checkCharge();
            held = pin.held();
            pin.commit();
        }
        assertEquals(4, held.rings().size(), "16 buffers of 4 pages, 4 a table");
        assertEquals(pinBaseline + shown(PAGES * PS), vmPin(), "VmPin grows by exactly the pinned size");
        assertArrayEquals(before, pfns(region, PAGES), "the pages already present are the ones pinned");
        p.release(held);
        assertEquals(pinBaseline, vmPin(), "unregistering unpins at once");
    }

    @Test
    void aTableThatCannotBePinnedRollsBackTheTablesBeforeIt() {
        // The last 8 pages mapped read-only: the fourth table's FOLL_WRITE pin fails after three succeeded.
        Mman.mprotect(region + (PAGES - 8) * PS, 8 * PS, Mman.PROT_READ);
        LongTermPinning p = new LongTermPinning(new MemlockAccount(PS), 4 * PS, 4);
        long[] seen = new long[1];
        KvmException e;
        try (LongTermPinning.Pin pin = p.begin("test", region, region + PAGES * PS, PAGES)) {
            e = assertThrows(KvmException.class, pin::pin);
            seen[0] = vmPin();
        }
        System.out.println("pin over a read-only tail: " + e.getMessage());
        assertEquals(Errno.ENOMEM, e.errno(), "the RFC reports a failed pin as ENOMEM");
        SyscallException k = assertInstanceOf(SyscallException.class, e.getCause());
        assertEquals(Errno.EFAULT.number, k.errno(), "the kernel's own answer: EFAULT, no writable page to pin");
        assertTrue(k.getMessage().contains("IORING_REGISTER_BUFFERS"), k.getMessage());
        assertEquals(pinBaseline, seen[0], "already rolled back when the exception left pin()");
    }

    @Test
    void theKernelsRegistrationLimits() {
        try (IoUring ring = IoUring.setup(1)) {
            try (IovecArray big = IovecArray.allocate(1)) {
                big.set(0, region, IoUring.MAX_BUFFER_BYTES + PS);
                SyscallException e = assertThrows(SyscallException.class, () -> ring.registerBuffers(big));
                assertEquals(Errno.EFAULT.number, e.errno(), "a buffer over 1 GiB: " + e.getMessage());
            }
            try (IovecArray many = IovecArray.allocate(IoUring.MAX_BUFFERS + 1)) {
                for (int i = 0; i < many.count(); i++) many.set(i, region, PS);
                SyscallException e = assertThrows(SyscallException.class, () -> ring.registerBuffers(many));
                assertEquals(Errno.EINVAL.number, e.errno(), "more than 16384 buffers: " + e.getMessage());
            }
            assertEquals(pinBaseline, vmPin(), "refused before anything was pinned");
            try (IovecArray one = IovecArray.allocate(1)) {
                one.set(0, region, PAGES * PS);
                ring.registerBuffers(one);
                assertEquals(pinBaseline + shown(PAGES * PS), vmPin());
                SyscallException e = assertThrows(SyscallException.class, () -> ring.registerBuffers(one));
                assertEquals(Errno.EBUSY.number, e.errno(), "one table a ring: " + e.getMessage());
                ring.unregisterBuffers();
                assertEquals(pinBaseline, vmPin());
            }
        }
    }
}
