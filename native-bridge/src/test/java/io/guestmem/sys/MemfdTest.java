package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** memfd_create, memfd_secret, ftruncate, fallocate(PUNCH_HOLE) on real files. */
class MemfdTest {
    static final long P = Posix.PAGE_SIZE;

    @Test
    void memfdSizedMappedAndPunched() throws Exception {
        int fd = Memfd.create("guestmem-test", Memfd.MFD_ALLOW_SEALING);
        try {
            Memfd.ftruncate(fd, 4 * P);
            assertEquals(4 * P, Files.size(Path.of("/proc/self/fd/" + fd)));
            assertTrue(Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd)).toString().startsWith("/memfd:guestmem-test"));
            long a = Mman.mmap(0, 4 * P, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0);
            try {
                MemorySegment s = MemorySegment.ofAddress(a).reinterpret(4 * P);
                s.set(ValueLayout.JAVA_LONG, 0, 7);
                s.set(ValueLayout.JAVA_LONG, P, 8);
                Memfd.punchHole(fd, 0, P);
                assertEquals(0, s.get(ValueLayout.JAVA_LONG, 0), "punched page reads zero");
                assertEquals(8, s.get(ValueLayout.JAVA_LONG, P), "the next page is intact");
                assertEquals(4 * P, Files.size(Path.of("/proc/self/fd/" + fd)), "KEEP_SIZE");
            } finally {
                Mman.munmap(a, 4 * P);
            }
            SyscallException e = assertThrows(SyscallException.class, () -> Memfd.ftruncate(fd, -1));
            assertEquals("EINVAL", e.errnoName());
        } finally {
            Posix.close(fd);
        }
    }

    @Test
    void hugetlbFlagsEncodeLog2OfTheSize() {
        assertEquals(Memfd.MFD_HUGETLB | (21 << 26), Memfd.hugetlbFlags(2L << 20));
        assertEquals(Memfd.MFD_HUGETLB | (30 << 26), Memfd.hugetlbFlags(1L << 30));
        assertThrows(IllegalArgumentException.class, () -> Memfd.hugetlbFlags(3L << 20));
        // a size the kernel has no hstate for (8 MiB on x86-64): the kernel finds no hugetlbfs mount, ENODEV
        SyscallException e = assertThrows(SyscallException.class, () -> Memfd.create("bad", Memfd.hugetlbFlags(1L << 23)));
        assertEquals("ENODEV", e.errnoName());
        assertTrue(e.getMessage().contains("memfd_create(bad"), e.getMessage());
    }

    @Test
    void badFlagsAndBadFdFail() {
        assertEquals("EINVAL", assertThrows(SyscallException.class, () -> Memfd.create("x", 0x100)).errnoName());
        assertEquals("EBADF", assertThrows(SyscallException.class, () -> Memfd.punchHole(-1, 0, P)).errnoName());
        assertEquals("EBADF", assertThrows(SyscallException.class, () -> Memfd.ftruncate(-1, P)).errnoName());
    }

    @Test
    void memfdSecretMapsAndHoldsData() {
        int fd = Memfd.secret(0);
        try {
            Memfd.ftruncate(fd, 2 * P);
            long a = Mman.mmap(0, 2 * P, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0);
            try {
                MemorySegment s = MemorySegment.ofAddress(a).reinterpret(2 * P);
                s.set(ValueLayout.JAVA_LONG, P, 0x5ec2e7L);
                assertEquals(0x5ec2e7L, s.get(ValueLayout.JAVA_LONG, P));
            } finally {
                Mman.munmap(a, 2 * P);
            }
        } finally {
            Posix.close(fd);
        }
        SyscallException e = assertThrows(SyscallException.class, () -> Memfd.secret(0x1));
        assertEquals("EINVAL", e.errnoName());
        assertTrue(e.getMessage().startsWith("EINVAL from memfd_secret("), e.getMessage());
    }
}
