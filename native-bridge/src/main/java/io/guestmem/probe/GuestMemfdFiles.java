package io.guestmem.probe;

import static io.guestmem.ffm.Native.C_INT;
import static io.guestmem.ffm.Native.C_LONG;
import static io.guestmem.ffm.Native.C_POINTER;

import io.guestmem.ffm.Native;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * The file calls a guest_memfd refuses, as raw results for tests and probes: plain {@code read}/{@code write}.
 * Not API: the package is exported to core alone (whose tests use it), so a VMM never sees it.
 * Punching holes goes through {@link io.guestmem.sys.Memfd#punchHole}.
 */
public final class GuestMemfdFiles {
    private GuestMemfdFiles() {}

    private static final MethodHandle READ = Native.errnoCall("read",
            FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_LONG));
    private static final MethodHandle WRITE = Native.errnoCall("write",
            FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_LONG));

    /** {@code read(fd, buf, len)}: bytes read, or -errno (a guest_memfd refuses it). */
    public static long readRaw(int fd, long len) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = Native.state();
            long r = (long) READ.invokeExact(st, fd, a.allocate(Math.max(1, len)), len);
            return r >= 0 ? r : -Native.errno(st);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** {@code write(fd, zeros, len)}: bytes written, or -errno (a guest_memfd refuses it). */
    public static long writeRaw(int fd, long len) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = Native.state();
            long r = (long) WRITE.invokeExact(st, fd, a.allocate(Math.max(1, len)), len);
            return r >= 0 ? r : -Native.errno(st);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }
}
