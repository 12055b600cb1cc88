package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.ProcText;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * A perf ring buffer maps; whether it is VM_PFNMAP | VM_IO is the kernel's choice (x86-64 6.18: yes; arm64 6.12:
 * no), and {@link io.guestmem.host.Pfnmap} must say the same as the mapping's own VmFlags.
 */
class PerfEventTest {
    @Test
    void dummyEventRingIsPfnmapIo() {
        int fd = PerfEvent.openDummy();
        long size = PerfEvent.ringSize(8);
        assertEquals(9 * Posix.PAGE_SIZE, size);
        try {
            long a = Mman.mmap(0, size, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0);
            try {
                Set<String> flags = ProcText.vmFlags(a);
                boolean pfnmap = flags.contains("pf") && flags.contains("io");
                assertEquals(pfnmap, io.guestmem.host.Pfnmap.available(), "Pfnmap agrees with the ring's VmFlags " + flags
                        + " (" + io.guestmem.host.Pfnmap.unavailableReason().orElse("available") + ")");
                if (!pfnmap) System.out.println("INFO the perf ring is not VM_PFNMAP|VM_IO on this kernel: VmFlags " + flags);
                assertEquals(size, ProcText.mapOf(a).end() - a);
            } finally {
                Mman.munmap(a, size);
            }
        } finally {
            Posix.close(fd);
        }
    }

    @Test
    void failuresNameErrnoAndCall() {
        SyscallException e = assertThrows(SyscallException.class, () -> PerfEvent.open(PerfEvent.PERF_TYPE_SOFTWARE, 1000));
        assertTrue(e.is(Errno.ENOENT) || e.is(Errno.EINVAL), e.getMessage());
        assertTrue(e.getMessage().contains("perf_event_open(type=1, config=1000"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> PerfEvent.ringSize(3));
        int fd = PerfEvent.openDummy();
        try {
            // the data part must be a power of two pages: 1 + 3 pages is EINVAL from mmap
            SyscallException m = assertThrows(SyscallException.class,
                    () -> Mman.mmap(0, 4 * Posix.PAGE_SIZE, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0));
            assertEquals("EINVAL", m.errnoName());
        } finally {
            Posix.close(fd);
        }
    }
}
