package io.guestmem.procfs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.sys.Posix;
import java.lang.foreign.Arena;
import org.junit.jupiter.api.Test;

/** Bad input gives a clear typed error, never a crash or an invented answer. */
class BadInputTest {
    static final long PAGE = Posix.PAGE_SIZE;

    /** A pid that cannot be in use: above PID_MAX_LIMIT (2^22), the most pid_max can be set to. */
    static int deadPid() {
        return (1 << 22) + 1;
    }

    @Test
    void unalignedAddressAndBadCounts() {
        try (Pagemap pm = Pagemap.openSelf()) {
            var e = assertThrows(IllegalArgumentException.class, () -> pm.read(PAGE + 1, 1));
            assertTrue(e.getMessage().contains("not aligned"), e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> pm.read(PAGE, 0));
            assertThrows(IllegalArgumentException.class, () -> pm.read(PAGE, -1L, Arena.global().allocate(8)));
            assertThrows(IndexOutOfBoundsException.class, () -> pm.read(PAGE, new long[2], 1, 2));
            assertThrows(IllegalArgumentException.class, () -> pm.read(PAGE, 2, java.lang.foreign.MemorySegment.ofArray(new long[2])));
            assertThrows(IllegalArgumentException.class, () -> pm.read(PAGE, 4, Arena.global().allocate(8)));
        }
    }

    @Test
    void readsPastTheEndOfTheAddressSpace() {
        try (Pagemap pm = Pagemap.openSelf()) {
            // Far above any user address space (x86-64 5-level ends at 2^56, arm64 at 2^52).
            var e = assertThrows(AddressRangeException.class, () -> pm.read(1L << 60, 1));
            assertTrue(e.getMessage().contains("end of the user address space"), e.getMessage());
            // The limit is the kernel's: the last page below it has an entry, and every mapping (the stack
            // included) lies below it.
            long limit = pm.userAddressLimit();
            assertEquals(1, pm.read(limit - PAGE, 1).length);
            long highestMapping = Maps.self().stream().mapToLong(MapsEntry::end)
                    .filter(end -> Long.compareUnsigned(end, limit) <= 0).max().orElseThrow();
            assertTrue(highestMapping > (1L << 32), "highest user mapping " + Long.toHexString(highestMapping));
            // Straddling the end.
            var s = assertThrows(AddressRangeException.class, () -> pm.read(limit - PAGE, 2));
            System.out.println(s.getMessage());
            assertThrows(AddressRangeException.class, () -> pm.read(limit, 1));
            // Kernel-half and wrapping addresses.
            assertThrows(AddressRangeException.class, () -> pm.read(-PAGE, 1));
            assertThrows(AddressRangeException.class, () -> pm.read(-PAGE, 2));
        }
    }

    @Test
    void pidThatDoesNotExist() throws Exception {
        int pid = deadPid();
        var e = assertThrows(NoSuchProcessException.class, () -> Pagemap.open(pid));
        assertEquals(pid, e.pid());
        System.out.println(e.getMessage());
        assertThrows(NoSuchProcessException.class, () -> Smaps.read(pid));
        assertThrows(NoSuchProcessException.class, () -> Smaps.vmaOf(pid, PAGE));
        assertThrows(NoSuchProcessException.class, () -> Maps.read(pid));
        assertThrows(NoSuchProcessException.class, () -> ProcStatus.read(pid));
        assertThrows(IllegalArgumentException.class, () -> Pagemap.open(-3));
    }

    @Test
    void processThatExitsWhileOpen() throws Exception {
        Process p = new ProcessBuilder("sleep", "30").start();
        Pagemap pm = Pagemap.open((int) p.pid());
        try {
            long stack = Maps.read((int) p.pid()).stream().filter(x -> x.name().equals("[stack]")).findFirst().orElseThrow().start();
            p.destroy();
            p.waitFor();
            // The zombie is reaped by waitFor: the pagemap now ends at 0.
            assertThrows(NoSuchProcessException.class, () -> pm.read(stack, 1));
        } finally {
            pm.close();
        }
    }

    @Test
    void useAfterClose() {
        Pagemap pm = Pagemap.openSelf();
        pm.close();
        pm.close(); // idempotent
        assertThrows(IllegalStateException.class, () -> pm.read(PAGE, 1));
        KPageFlags k = KPageFlags.open();
        k.close();
        assertThrows(IllegalStateException.class, () -> k.read(1));
        try (Pagemap p2 = Pagemap.openSelf()) {
            PagemapScan s = PagemapScan.open(p2);
            s.close();
            assertThrows(IllegalStateException.class, () -> s.scan(PAGE, 2 * PAGE, PagemapScan.PRESENT));
        }
    }

    @Test
    void badPfnsAndScanArguments() {
        KernelViewTest.assumeRoot();
        try (KPageFlags k = KPageFlags.open(); Pagemap pm = Pagemap.openSelf(); PagemapScan s = PagemapScan.open(pm)) {
            assertThrows(IllegalArgumentException.class, () -> k.read(PagemapEntry.PFN_HIDDEN));
            assertThrows(IllegalArgumentException.class, () -> k.read(new long[] {1, PagemapEntry.PFN_NONE}));
            var e = assertThrows(AddressRangeException.class, () -> k.read(1L << 50));
            System.out.println(e.getMessage());
            assertThrows(IllegalArgumentException.class, () -> s.scan(PAGE + 1, 4 * PAGE, PagemapScan.PRESENT));
            assertThrows(IllegalArgumentException.class, () -> s.scan(4 * PAGE, PAGE, PagemapScan.PRESENT));
            assertThrows(IllegalArgumentException.class, () -> s.scan(PAGE, 4 * PAGE, 1L << 20));
            // The write-protect flags reach the kernel: CHECK_WPASYNC over memory not registered with
            // userfaultfd async-WP is refused by the kernel itself (EPERM).
            try (TestMemory m = TestMemory.anon(4 * PAGE)) {
                m.touchWrite(PAGE);
                var w = assertThrows(io.guestmem.sys.SyscallException.class, () -> s.scan(m.address, m.address + m.length,
                        PagemapScan.WP_MATCHING | PagemapScan.CHECK_WPASYNC, 0, PagemapScan.WRITTEN, 0, PagemapScan.WRITTEN, 0));
                assertEquals("EPERM", w.errnoName(), w.getMessage());
                System.out.println(w.getMessage());
            }
        }
    }
}
