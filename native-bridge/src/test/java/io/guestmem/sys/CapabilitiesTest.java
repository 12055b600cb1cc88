package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** capget agrees with the kernel's CapEff line in /proc/self/status. */
class CapabilitiesTest {
    @Test
    void effectiveSetMatchesProcStatus() throws Exception {
        String line = Files.readAllLines(Path.of("/proc/self/status")).stream()
                .filter(l -> l.startsWith("CapEff:")).findFirst().orElseThrow();
        long fromProc = Long.parseUnsignedLong(line.substring(7).trim(), 16);
        assertEquals(fromProc, Capabilities.effective());
        assertEquals((fromProc & (1L << 14)) != 0, Capabilities.has(Capabilities.CAP_IPC_LOCK));
        assertEquals((fromProc & (1L << 21)) != 0, Capabilities.has(Capabilities.CAP_SYS_ADMIN));
        assertEquals(fromProc, Capabilities.effective(Posix.getpid()));
    }

    @Test
    void failuresNameErrnoAndCall() {
        SyscallException e = assertThrows(SyscallException.class, () -> Capabilities.capget(0x1234, 0));
        assertEquals("EINVAL", e.errnoName());
        assertTrue(e.getMessage().contains("capget(version=0x1234"), e.getMessage());
        assertEquals("ESRCH", assertThrows(SyscallException.class, () -> Capabilities.effective(Integer.MAX_VALUE)).errnoName());
        assertThrows(IllegalArgumentException.class, () -> Capabilities.has(64));
    }
}
