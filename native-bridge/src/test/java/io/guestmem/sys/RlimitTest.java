package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.*;

import jnr.posix.POSIX;
import jnr.posix.POSIXFactory;
import jnr.posix.RLimit;
import org.junit.jupiter.api.Test;

/** getrlimit/setrlimit/prlimit agree with JNR-POSIX and with the kernel's /proc/self/limits. */
class RlimitTest {
    private static final POSIX ORACLE = POSIXFactory.getNativePOSIX();

    @Test
    void getrlimitAgreesWithJnrPosix() {
        for (int res : new int[] {Rlimit.RLIMIT_MEMLOCK, Rlimit.RLIMIT_AS}) {
            Rlimit.Limit ours = Rlimit.getrlimit(res);
            RLimit theirs = ORACLE.getrlimit(res);
            assertEquals(theirs.rlimCur(), ours.soft(), "soft of " + res);
            assertEquals(theirs.rlimMax(), ours.hard(), "hard of " + res);
            assertEquals(ours, Rlimit.prlimit(0, res, null));
            assertEquals(ours, Rlimit.prlimit(Posix.getpid(), res, null));
        }
    }

    @Test
    void setrlimitLowersSoftAndRestores() {
        Rlimit.Limit orig = Rlimit.getrlimit(Rlimit.RLIMIT_MEMLOCK);
        long lower = orig.softUnlimited() ? 1 << 20 : Math.min(orig.soft(), 1 << 20);
        try {
            Rlimit.setrlimit(Rlimit.RLIMIT_MEMLOCK, new Rlimit.Limit(lower, orig.hard()));
            assertEquals(lower, Rlimit.getrlimit(Rlimit.RLIMIT_MEMLOCK).soft());
            assertEquals(lower, ORACLE.getrlimit(Rlimit.RLIMIT_MEMLOCK).rlimCur());
            Rlimit.Limit old = Rlimit.prlimit(0, Rlimit.RLIMIT_MEMLOCK, orig);
            assertEquals(lower, old.soft(), "prlimit returns the limit in force before");
        } finally {
            Rlimit.setrlimit(Rlimit.RLIMIT_MEMLOCK, orig);
        }
        assertEquals(orig, Rlimit.getrlimit(Rlimit.RLIMIT_MEMLOCK));
    }

    @Test
    void failuresNameErrnoAndCall() {
        Rlimit.Limit orig = Rlimit.getrlimit(Rlimit.RLIMIT_AS);
        // soft above hard is always EINVAL (when hard is finite; with an infinite hard use a finite hard below soft)
        SyscallException e = assertThrows(SyscallException.class,
                () -> Rlimit.setrlimit(Rlimit.RLIMIT_AS, new Rlimit.Limit(2L << 30, 1L << 30)));
        assertEquals("EINVAL", e.errnoName());
        assertTrue(e.getMessage().contains("setrlimit(RLIMIT_AS"), e.getMessage());
        assertEquals(orig, Rlimit.getrlimit(Rlimit.RLIMIT_AS), "a failed call changes nothing");
        assertEquals("ESRCH", assertThrows(SyscallException.class,
                () -> Rlimit.prlimit(Integer.MAX_VALUE, Rlimit.RLIMIT_MEMLOCK, null)).errnoName());
        assertEquals("EINVAL", assertThrows(SyscallException.class, () -> Rlimit.getrlimit(9999)).errnoName());
    }
}
