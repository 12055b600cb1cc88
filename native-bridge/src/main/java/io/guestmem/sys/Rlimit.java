package io.guestmem.sys;

import io.guestmem.ffm.Native;
import static io.guestmem.ffm.Native.C_INT;
import static io.guestmem.ffm.Native.C_POINTER;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * Resource limits: {@code getrlimit}, {@code setrlimit}, {@code prlimit}. The resource numbers used
 * here (MEMLOCK, AS) are the asm-generic ones, shared by x86-64 and arm64.
 */
public final class Rlimit {
    private Rlimit() {}

    public static final int RLIMIT_AS = 9;
    public static final int RLIMIT_MEMLOCK = 8;
    /** {@code RLIM_INFINITY}: {@code ~0UL}, i.e. -1 as a Java long. */
    public static final long RLIM_INFINITY = -1L;

    /** {@code struct rlimit {rlim_t rlim_cur, rlim_max}}. */
    private static final MemoryLayout RLIMIT = MemoryLayout.structLayout(
            ValueLayout.JAVA_LONG.withName("rlim_cur"), ValueLayout.JAVA_LONG.withName("rlim_max"));

    private static final MethodHandle GETRLIMIT = Native.errnoCall("getrlimit",
            FunctionDescriptor.of(C_INT, C_INT, C_POINTER));
    private static final MethodHandle SETRLIMIT = Native.errnoCall("setrlimit",
            FunctionDescriptor.of(C_INT, C_INT, C_POINTER));
    private static final MethodHandle PRLIMIT = Native.errnoCall("prlimit",
            FunctionDescriptor.of(C_INT, C_INT, C_INT, C_POINTER, C_POINTER));

    /** A soft and hard limit; {@link #RLIM_INFINITY} means unlimited. */
    public record Limit(long soft, long hard) {
        public boolean softUnlimited() {
            return soft == RLIM_INFINITY;
        }

        public boolean hardUnlimited() {
            return hard == RLIM_INFINITY;
        }

        @Override
        public String toString() {
            return "soft=" + show(soft) + " hard=" + show(hard);
        }

        private static String show(long v) {
            return v == RLIM_INFINITY ? "unlimited" : Fmt.size(v);
        }
    }

    public static Limit getrlimit(int resource) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(RLIMIT);
            MemorySegment st = Native.state();
            int r = (int) GETRLIMIT.invokeExact(st, resource, buf);
            if (r < 0) throw new SyscallException(Native.errno(st), "getrlimit(" + name(resource) + ")");
            return read(buf);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    public static void setrlimit(int resource, Limit limit) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = write(a, limit);
            MemorySegment st = Native.state();
            int r = (int) SETRLIMIT.invokeExact(st, resource, buf);
            if (r < 0) throw new SyscallException(Native.errno(st), "setrlimit(" + name(resource) + ", " + limit + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /**
     * {@code prlimit(pid, resource, newLimit, &old)}: sets the limit of any process (0 = this one) when
     * {@code newLimit} is non-null, and returns the limit in force before the call.
     */
    public static Limit prlimit(int pid, int resource, Limit newLimit) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment in = newLimit == null ? MemorySegment.NULL : write(a, newLimit);
            MemorySegment old = a.allocate(RLIMIT);
            MemorySegment st = Native.state();
            int r = (int) PRLIMIT.invokeExact(st, pid, resource, in, old);
            if (r < 0) throw new SyscallException(Native.errno(st), "prlimit(" + pid + ", " + name(resource)
                    + ", " + (newLimit == null ? "NULL" : newLimit) + ")");
            return read(old);
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    private static Limit read(MemorySegment buf) {
        return new Limit(buf.get(ValueLayout.JAVA_LONG, 0), buf.get(ValueLayout.JAVA_LONG, 8));
    }

    private static MemorySegment write(Arena a, Limit l) {
        MemorySegment buf = a.allocate(RLIMIT);
        buf.set(ValueLayout.JAVA_LONG, 0, l.soft());
        buf.set(ValueLayout.JAVA_LONG, 8, l.hard());
        return buf;
    }

    private static String name(int resource) {
        return switch (resource) {
            case RLIMIT_MEMLOCK -> "RLIMIT_MEMLOCK";
            case RLIMIT_AS -> "RLIMIT_AS";
            default -> "resource " + resource;
        };
    }
}
