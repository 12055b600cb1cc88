package io.guestmem.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * {@code perf_event_open}: here for one purpose, a source of a real {@code VM_PFNMAP | VM_IO} mapping.
 * The ring buffer of a software dummy event ({@code PERF_TYPE_SOFTWARE / PERF_COUNT_SW_DUMMY}) is mapped
 * by the kernel with {@code remap}-style pages, which is how KVM meets PFNMAP memory (device BARs) in
 * real VMMs, and no device is needed.
 */
public final class PerfEvent {
    private PerfEvent() {}

    public static final int PERF_TYPE_SOFTWARE = 1;
    public static final long PERF_COUNT_SW_DUMMY = 9;
    public static final long PERF_FLAG_FD_CLOEXEC = 8;
    /** The attr size we pass ({@code PERF_ATTR_SIZE_VER7}); the kernel accepts any known version. */
    static final int ATTR_SIZE = 128;
    // Bits of the flags word at offset 40 of perf_event_attr.
    private static final long DISABLED = 1L << 0, EXCLUDE_KERNEL = 1L << 5, EXCLUDE_HV = 1L << 6;

    /**
     * Opens a disabled software event of {@code type}/{@code config} on this process, any CPU. Kernel
     * and hypervisor are excluded so that {@code perf_event_paranoid} up to 2 allows it unprivileged.
     */
    public static int open(int type, long config) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment attr = a.allocate(ATTR_SIZE, 8);
            attr.set(ValueLayout.JAVA_INT, 0, type);
            attr.set(ValueLayout.JAVA_INT, 4, ATTR_SIZE);
            attr.set(ValueLayout.JAVA_LONG, 8, config);
            attr.set(ValueLayout.JAVA_LONG, 40, DISABLED | EXCLUDE_KERNEL | EXCLUDE_HV);
            long r = Posix.syscallRaw(Arch.CURRENT.sysPerfEventOpen(), attr.address(), 0, -1, -1, PERF_FLAG_FD_CLOEXEC, 0);
            if (r < 0) throw new SyscallException((int) -r, "perf_event_open(type=" + type + ", config=" + config
                    + ", pid=0, cpu=-1, group=-1, PERF_FLAG_FD_CLOEXEC)");
            return (int) r;
        }
    }

    /** The dummy software event: the cheapest event that still has a ring buffer. */
    public static int openDummy() {
        return open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_DUMMY);
    }

    /** The size of a ring buffer mapping: one metadata page plus {@code dataPages} (a power of two). */
    public static long ringSize(int dataPages) {
        if (dataPages <= 0 || Integer.bitCount(dataPages) != 1)
            throw new IllegalArgumentException("perf ring data pages must be a power of two, got " + dataPages);
        return (1L + dataPages) * Posix.PAGE_SIZE;
    }
}
