package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import jnr.posix.POSIX;
import jnr.posix.POSIXFactory;
import org.junit.jupiter.api.Test;

/** Our FFM calls agree with JNR-POSIX, an independent binding of the same libc. */
class PosixTest {
    private static final POSIX ORACLE = POSIXFactory.getNativePOSIX();

    @Test
    void identityAgreesWithJnrPosix() {
        assertEquals(ORACLE.getpid(), Posix.getpid());
        assertEquals(ORACLE.geteuid(), Posix.geteuid());
        assertEquals(ORACLE.getuid(), Posix.getuid());
    }

    @Test
    void pageSizeIsAPowerOfTwo() {
        assertTrue(Posix.PAGE_SIZE >= 4096 && Long.bitCount(Posix.PAGE_SIZE) == 1);
    }

    @Test
    void failedCallNamesErrnoAndCall() {
        SyscallException e = assertThrows(SyscallException.class, () -> Posix.open("/nonexistent/guestmem", Posix.O_RDONLY));
        assertEquals(Errno.ENOENT.number, e.errno());
        assertEquals("ENOENT", e.errnoName());
        assertTrue(e.getMessage().startsWith("ENOENT from open(/nonexistent/guestmem"), e.getMessage());
    }

    @Test
    void mmapRejectsZeroLength() {
        SyscallException e = assertThrows(SyscallException.class,
                () -> Mman.mmap(0, 0, Mman.PROT_READ, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0));
        assertEquals("EINVAL", e.errnoName());
    }
}
