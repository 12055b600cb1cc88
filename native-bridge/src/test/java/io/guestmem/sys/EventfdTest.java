package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Eventfd counts what it was signalled, poll sees it, and an adopted fd that is no eventfd is refused. */
class EventfdTest {
    @Test
    void signalsAddUpAndDrainResets() {
        try (Eventfd e = Eventfd.create("test")) {
            assertEquals(0, e.drain(), "non-blocking: nothing yet is 0, not a wait");
            e.signal();
            e.signal();
            e.signal();
            assertEquals(3, e.drain());
            assertEquals(0, e.drain());
        }
    }

    @Test
    void pollReportsTheReadableOneOnly() {
        try (Eventfd a = Eventfd.create("a"); Eventfd b = Eventfd.create("b")) {
            short[] rev = new short[2];
            assertEquals(0, Poll.readable(new int[] {a.fd(), b.fd()}, 2, rev, 0));
            b.signal();
            assertEquals(1, Poll.readable(new int[] {a.fd(), b.fd()}, 2, rev, 1000));
            assertEquals(0, rev[0]);
            assertTrue((rev[1] & Poll.POLLIN) != 0);
            assertEquals(1, b.drain());
        }
    }

    @Test
    void aPipeAdoptedAsAnEventfdIsRefusedOnAShortRead() {
        // a hostile peer can send any fd as a "kick": a pipe whose writer is gone reads 0 bytes, not a count
        FileFd.Pipe p = FileFd.pipe();
        try (p; Eventfd fake = Eventfd.adopt(Posix.open("/proc/self/fd/" + p.readEnd().fd(), Posix.O_RDONLY), "a pipe")) {
            p.writeEnd().close();
            SyscallException e = assertThrows(SyscallException.class, fake::drain);
            assertTrue(e.is(Errno.EINVAL), e.getMessage());
            assertTrue(e.getMessage().contains("0 bytes"), e.getMessage());
        }
    }
}
