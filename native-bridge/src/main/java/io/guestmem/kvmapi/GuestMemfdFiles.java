package io.guestmem.kvmapi;

import static io.guestmem.sys.Native.C_INT;
import static io.guestmem.sys.Native.C_LONG;
import static io.guestmem.sys.Native.C_POINTER;

import io.guestmem.sys.Fmt;
import io.guestmem.sys.Native;
import io.guestmem.sys.SyscallException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * The file calls a guest_memfd answers (or refuses): {@code fallocate} punch-hole, plain {@code read}/
 * {@code write}. Local to KVM until the host module's binding lands.
 * TODO: switch punchHole to io.guestmem.sys.Memfd.fallocate once the `host` branch is merged into main.
 */
public final class GuestMemfdFiles {
    private GuestMemfdFiles() {}

    public static final int FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2;

    private static final MethodHandle FALLOCATE = Native.errnoCall("fallocate",
            FunctionDescriptor.of(C_INT, C_INT, C_INT, C_LONG, C_LONG));
    private static final MethodHandle READ = Native.errnoCall("read",
            FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_LONG));
    private static final MethodHandle WRITE = Native.errnoCall("write",
            FunctionDescriptor.of(C_LONG, C_INT, C_POINTER, C_LONG));

    /** {@code fallocate(fd, mode, offset, len)}; throws naming the call. */
    public static void fallocate(int fd, int mode, long offset, long len) {
        try {
            MemorySegment st = Native.state();
            int r = (int) FALLOCATE.invokeExact(st, fd, mode, offset, len);
            if (r < 0) throw new SyscallException(Native.errno(st),
                    "fallocate(" + fd + ", " + Fmt.hex(mode) + ", " + Fmt.hex(offset) + ", " + Fmt.size(len) + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** Frees {@code [offset, offset+len)} of the file: guest_memfd zeroes the pages on next use. */
    public static void punchHole(int fd, long offset, long len) {
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len);
    }

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
