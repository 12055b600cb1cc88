package io.guestmem.ffm;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/**
 * The one place that creates downcall handles. Every binding class holds its handles in
 * {@code static final} fields created through here (as Lucene's {@code PosixNativeAccess} does), so
 * the JIT can inline them, and every handle captures {@code errno} right after the call: reading it
 * later would see whatever the JVM itself did in between.
 *
 * <p>The errno capture segment is per thread and reused, so a call allocates nothing.
 */
public final class Native {
    private Native() {}

    public static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LIBC = LINKER.defaultLookup();
    private static final StructLayout CAPTURE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO =
            CAPTURE.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final ThreadLocal<MemorySegment> STATE =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(CAPTURE));

    public static final ValueLayout.OfInt C_INT = ValueLayout.JAVA_INT;
    public static final ValueLayout.OfLong C_LONG = ValueLayout.JAVA_LONG;
    public static final ValueLayout.OfLong C_SIZE_T = ValueLayout.JAVA_LONG;
    public static final ValueLayout.OfLong C_OFF_T = ValueLayout.JAVA_LONG;
    public static final java.lang.foreign.AddressLayout C_POINTER = ValueLayout.ADDRESS;

    /** A libc function whose first parameter (added here) is the errno capture segment. */
    public static MethodHandle errnoCall(String symbol, FunctionDescriptor descriptor) {
        MemorySegment address = LIBC.find(symbol)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + symbol));
        return LINKER.downcallHandle(address, descriptor, Linker.Option.captureCallState("errno"));
    }

    /**
     * A libc function called as a {@linkplain Linker.Option#critical(boolean) critical} downcall that may
     * take heap segments (a {@code long[]}) as pointer arguments: the kernel copies straight into the Java
     * array, no native staging buffer. Only for short calls that cannot block for long ({@code pread} of
     * procfs tables in bounded chunks): the JVM cannot reach a safepoint during the call.
     */
    public static MethodHandle errnoCallCritical(String symbol, FunctionDescriptor descriptor) {
        MemorySegment address = LIBC.find(symbol)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + symbol));
        return LINKER.downcallHandle(address, descriptor,
                Linker.Option.captureCallState("errno"), Linker.Option.critical(true));
    }

    /** A variadic libc function ({@code syscall}, {@code ioctl}, {@code open}) with errno capture. */
    public static MethodHandle errnoCallVariadic(String symbol, FunctionDescriptor descriptor, int firstVariadic) {
        MemorySegment address = LIBC.find(symbol)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + symbol));
        return LINKER.downcallHandle(address, descriptor,
                Linker.Option.captureCallState("errno"), Linker.Option.firstVariadicArg(firstVariadic));
    }

    /** A libc function that cannot fail (getpid, getpagesize ...). */
    public static MethodHandle call(String symbol, FunctionDescriptor descriptor) {
        MemorySegment address = LIBC.find(symbol)
                .orElseThrow(() -> new UnsatisfiedLinkError("libc has no " + symbol));
        return LINKER.downcallHandle(address, descriptor);
    }

    /** This thread's errno capture segment: pass it as the first argument of an {@link #errnoCall}. */
    public static MemorySegment state() {
        return STATE.get();
    }

    /** The errno the last call on this thread captured into {@code state}. */
    public static int errno(MemorySegment state) {
        return (int) ERRNO.get(state, 0L);
    }

    /** Rethrows what a downcall threw: only the JVM's own errors can come out of invokeExact. */
    public static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException("downcall failed", t);
    }
}
