package io.guestmem.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The effective capability set of a process, read with the raw {@code capget} syscall
 * ({@code _LINUX_CAPABILITY_VERSION_3}: 64 bits in two 32-bit words). The library asks it rather than
 * assuming root: pfns in pagemap need CAP_SYS_ADMIN, locking past RLIMIT_MEMLOCK needs CAP_IPC_LOCK.
 */
public final class Capabilities {
    private Capabilities() {}

    public static final int CAP_IPC_LOCK = 14;
    public static final int CAP_SYS_ADMIN = 21;
    /** {@code _LINUX_CAPABILITY_VERSION_3}. */
    public static final int VERSION_3 = 0x20080522;

    /** The effective set of {@code pid} (0 = this thread) as a 64-bit mask, bit n = capability n. */
    public static long effective(int pid) {
        return capget(VERSION_3, pid);
    }

    /** The effective set of this process. */
    public static long effective() {
        return effective(0);
    }

    /** Whether this process has capability {@code cap} in its effective set. */
    public static boolean has(int cap) {
        if (cap < 0 || cap > 63) throw new IllegalArgumentException("capability number out of range: " + cap);
        return (effective() & (1L << cap)) != 0;
    }

    /** {@code capget} with an explicit header version (tests pass a wrong one to see EINVAL). */
    static long capget(int version, int pid) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment header = a.allocate(8, 4); // struct __user_cap_header_struct {u32 version; int pid;}
            header.set(ValueLayout.JAVA_INT, 0, version);
            header.set(ValueLayout.JAVA_INT, 4, pid);
            MemorySegment data = a.allocate(24, 4);  // struct __user_cap_data_struct[2] {u32 effective, permitted, inheritable;}
            long r = Posix.syscallRaw(Arch.CURRENT.sysCapget(), header.address(), data.address(), 0, 0, 0, 0);
            if (r < 0) throw new SyscallException((int) -r, "capget(version=" + Fmt.hex(version) + ", pid=" + pid + ")");
            long low = Integer.toUnsignedLong(data.get(ValueLayout.JAVA_INT, 0));
            long high = Integer.toUnsignedLong(data.get(ValueLayout.JAVA_INT, 12));
            return low | (high << 32);
        }
    }
}
