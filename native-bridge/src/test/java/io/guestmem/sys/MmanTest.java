package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.ProcText;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** mprotect, madvise, mlock/mlock2/munlock, mremap, mincore on real anonymous memory. */
class MmanTest {
    static final long P = Posix.PAGE_SIZE;
    long addr;
    long len = 16 * P;

    @BeforeEach
    void map() {
        addr = Mman.mmap(0, len, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
    }

    @AfterEach
    void unmap() {
        if (addr != 0) Mman.munmap(addr, len);
    }

    @Test
    void mprotectChangesPermissionsInMaps() {
        Mman.mprotect(addr, P, Mman.PROT_NONE);
        assertEquals("---p", ProcText.mapOf(addr).perms());
        assertEquals("rw-p", ProcText.mapOf(addr + P).perms());
        SyscallException e = assertThrows(SyscallException.class, () -> Mman.mprotect(addr + 1, P, Mman.PROT_READ));
        assertEquals("EINVAL", e.errnoName());
        assertTrue(e.getMessage().contains("mprotect(0x"), e.getMessage());
    }

    @Test
    void populateWriteMakesPagesResidentAndDontneedDropsThem() {
        assertEquals(0, Mman.residentPages(addr, len));
        Mman.madvise(addr, len, Mman.MADV_POPULATE_WRITE);
        assertEquals(16, Mman.residentPages(addr, len));
        MemorySegment s = MemorySegment.ofAddress(addr).reinterpret(len);
        s.set(ValueLayout.JAVA_LONG, 0, 42);
        Mman.madvise(addr, len, Mman.MADV_DONTNEED);
        assertEquals(0, Mman.residentPages(addr, len));
        assertEquals(0, s.get(ValueLayout.JAVA_LONG, 0), "DONTNEED on private anon gives zero pages back");
    }

    @Test
    void madviseErrorsNameTheAdvice() {
        SyscallException e = assertThrows(SyscallException.class, () -> Mman.madvise(addr + 1, P, Mman.MADV_DONTNEED));
        assertEquals("EINVAL", e.errnoName());
        assertTrue(e.getMessage().contains("MADV_DONTNEED"), e.getMessage());
        assertEquals(-Errno.EINVAL.number, Mman.madviseRaw(addr, P, 12345));
        assertEquals(0, Mman.madviseRaw(addr, P, Mman.MADV_HUGEPAGE));
        assertTrue(ProcText.vmFlags(addr).contains("hg"));
        assertEquals(0, Mman.madviseRaw(addr, P, Mman.MADV_NOHUGEPAGE));
        assertTrue(ProcText.vmFlags(addr).contains("nh"));
        // MADV_REMOVE needs a shared mapping: on private anonymous memory the kernel says EINVAL.
        assertEquals(-Errno.EINVAL.number, Mman.madviseRaw(addr, P, Mman.MADV_REMOVE));
    }

    @Test
    void mlockShowsInVmLckAndMunlockReturnsIt() {
        long before = ProcText.statusKb("VmLck");
        Mman.mlock(addr, len);
        assertEquals(before + len / 1024, ProcText.statusKb("VmLck"));
        assertEquals(16, Mman.residentPages(addr, len), "mlock populates");
        Mman.munlock(addr, len);
        assertEquals(before, ProcText.statusKb("VmLck"));
    }

    @Test
    void mlock2OnFaultLocksWithoutPopulating() {
        long before = ProcText.statusKb("VmLck");
        Mman.mlock2(addr, len, Mman.MLOCK_ONFAULT);
        assertEquals(before + len / 1024, ProcText.statusKb("VmLck"));
        assertEquals(0, Mman.residentPages(addr, len), "ONFAULT must not populate");
        assertTrue(ProcText.vmFlags(addr).contains("lf"), "VM_LOCKONFAULT shows as lf");
        Mman.munlock(addr, len);
        assertEquals(before, ProcText.statusKb("VmLck"));
        SyscallException e = assertThrows(SyscallException.class, () -> Mman.mlock2(addr, len, 0x40));
        assertEquals("EINVAL", e.errnoName());
        assertTrue(e.getMessage().startsWith("EINVAL from mlock2(0x"), e.getMessage());
    }

    @Test
    void mlockOfUnmappedRangeIsEnomem() {
        Mman.munmap(addr + 8 * P, 8 * P);
        SyscallException e = assertThrows(SyscallException.class, () -> Mman.mlock(addr, len));
        assertEquals("ENOMEM", e.errnoName());
        assertEquals("ENOMEM", assertThrows(SyscallException.class, () -> Mman.munlock(addr + 8 * P, P)).errnoName());
        Mman.munmap(addr, 8 * P);
        addr = 0;
    }

    @Test
    void mremapMovesAndGrows() {
        MemorySegment.ofAddress(addr).reinterpret(len).set(ValueLayout.JAVA_LONG, 8, 0xfeedL);
        long moved = Mman.mremap(addr, len, 2 * len, Mman.MREMAP_MAYMOVE, 0);
        addr = moved;
        len = 2 * len;
        assertEquals(0xfeedL, MemorySegment.ofAddress(moved).reinterpret(len).get(ValueLayout.JAVA_LONG, 8));
        assertEquals(moved + len, ProcText.mapOf(moved).end());
        SyscallException e = assertThrows(SyscallException.class, () -> Mman.mremap(addr + 1, P, 2 * P, 0, 0));
        assertEquals("EINVAL", e.errnoName());
    }

    @Test
    void mincoreOfUnmappedIsEnomem() {
        Mman.munmap(addr, len);
        long a = addr;
        addr = 0;
        assertEquals("ENOMEM", assertThrows(SyscallException.class, () -> Mman.residentPages(a, P)).errnoName());
    }
}
