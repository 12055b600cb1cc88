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
 * CPU affinity of the calling thread: {@code sched_getaffinity} and {@code sched_setaffinity} with pid 0,
 * which the kernel applies to the calling thread only (a Java platform thread is one kernel thread). The
 * mask is an array of unsigned longs, bit {@code c % 64} of word {@code c / 64} for CPU {@code c}, on both
 * x86-64 and arm64.
 */
public final class Sched {
    private Sched() {}

    private static final MethodHandle GETAFFINITY = Native.errnoCall("sched_getaffinity",
            FunctionDescriptor.of(C_INT, C_INT, C_LONG, C_POINTER));
    private static final MethodHandle SETAFFINITY = Native.errnoCall("sched_setaffinity",
            FunctionDescriptor.of(C_INT, C_INT, C_LONG, C_POINTER));

    /** glibc's {@code cpu_set_t} holds 1024 CPUs; the kernel wants a mask at least as wide as its CPU ids. */
    private static final long FIRST_MASK_BYTES = 128, MAX_MASK_BYTES = 1 << 16;

    /** The CPUs the calling thread may run on, ascending. */
    public static int[] allowedCpus() {
        for (long bytes = FIRST_MASK_BYTES; ; bytes *= 2) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment mask = a.allocate(bytes, 8);
                MemorySegment st = Native.state();
                int r = (int) GETAFFINITY.invokeExact(st, 0, bytes, mask);
                if (r < 0) {
                    int e = Native.errno(st);
                    // EINVAL: the mask is narrower than the kernel's CPU ids; retry wider.
                    if (e == Errno.EINVAL.number && bytes < MAX_MASK_BYTES) continue;
                    throw new SyscallException(e, "sched_getaffinity(0, " + bytes + ")");
                }
                return cpusOf(mask.toArray(ValueLayout.JAVA_LONG));
            } catch (Throwable t) {
                throw Native.rethrow(t);
            }
        }
    }

    /** Restricts the calling thread to {@code cpu}. */
    public static void pinCurrentThread(int cpu) {
        if (cpu < 0 || cpu >= MAX_MASK_BYTES * 8) throw new IllegalArgumentException("cpu " + cpu);
        long bytes = Math.max(FIRST_MASK_BYTES, ((cpu / 64) + 1) * 8L);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment mask = a.allocate(bytes, 8);
            mask.setAtIndex(ValueLayout.JAVA_LONG, cpu / 64, 1L << (cpu % 64));
            MemorySegment st = Native.state();
            int r = (int) SETAFFINITY.invokeExact(st, 0, bytes, mask);
            if (r < 0) throw new SyscallException(Native.errno(st), "sched_setaffinity(0, cpu " + cpu + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    static int[] cpusOf(long[] words) {
        int n = 0;
        for (long w : words) n += Long.bitCount(w);
        int[] cpus = new int[n];
        int k = 0;
        for (int i = 0; i < words.length; i++) {
            for (long w = words[i]; w != 0; w &= w - 1) cpus[k++] = i * 64 + Long.numberOfTrailingZeros(w);
        }
        return cpus;
    }
}
