package io.guestmem.sys;

import io.guestmem.ffm.Native;
import static io.guestmem.ffm.Native.C_INT;
import static io.guestmem.ffm.Native.C_LONG;
import static io.guestmem.ffm.Native.C_POINTER;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * {@code poll(2)} for readability over several descriptors: what an event loop that serves a socket and
 * the kick eventfds of its queues in one thread waits in. EINTR restarts with the time left.
 */
public final class Poll {
    private Poll() {}

    /** poll's event bits (asm-generic/poll.h, the same on x86-64 and arm64). */
    public static final short POLLIN = 0x1, POLLERR = 0x8, POLLHUP = 0x10, POLLNVAL = 0x20;
    private static final long POLLFD_BYTES = 8;

    private static final MethodHandle POLL = Native.errnoCall("poll", FunctionDescriptor.of(C_INT, C_POINTER, C_LONG, C_INT));

    /**
     * Waits until one of the first {@code count} of {@code fds} is readable (or hung up, or in error), at most
     * {@code timeoutMs} (-1: no limit). Fills {@code revents[i]} with what the kernel reported for
     * {@code fds[i]} ({@link #POLLIN}, {@link #POLLHUP}, ...; 0 for none) and returns how many reported
     * anything, 0 at the timeout. A negative fd is skipped, as poll(2) does.
     */
    public static int readable(int[] fds, int count, short[] revents, int timeoutMs) {
        if (count < 0 || count > fds.length || count > revents.length)
            throw new IllegalArgumentException(count + " of " + fds.length + " fds, " + revents.length + " results");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(POLLFD_BYTES * Math.max(1, count), 8);
            for (int i = 0; i < count; i++) {
                p.set(ValueLayout.JAVA_INT, POLLFD_BYTES * i, fds[i]);
                p.set(ValueLayout.JAVA_SHORT, POLLFD_BYTES * i + 4, POLLIN);
            }
            long deadline = timeoutMs < 0 ? 0 : System.nanoTime() + timeoutMs * 1_000_000L;
            int ms = timeoutMs;
            while (true) {
                MemorySegment st = Native.state();
                int r = (int) POLL.invokeExact(st, p, (long) count, ms);
                if (r >= 0) {
                    for (int i = 0; i < count; i++) revents[i] = p.get(ValueLayout.JAVA_SHORT, POLLFD_BYTES * i + 6);
                    return r;
                }
                int e = Native.errno(st);
                if (e != Errno.EINTR.number) throw new SyscallException(e, "poll(" + count + " fds)");
                if (timeoutMs >= 0) ms = (int) Math.max(0, (deadline - System.nanoTime()) / 1_000_000L);
            }
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
