package io.guestmem.procfs;

import io.guestmem.sys.Arch;

/**
 * The kernel's {@code access_ok} for this process: the limit a user range may reach, read from the machine
 * (mm->task_size found in pagemap, refined by the architecture: {@link Arch#accessOkLimit}), and the range
 * rule itself. KVM applies it to a memslot's {@code [userspace_addr, userspace_addr + memory_size)}.
 */
public final class AccessOk {
    private AccessOk() {}

    private static final class Holder {
        static final long LIMIT = read();

        private static long read() {
            try (Pagemap self = Pagemap.openSelf()) {
                return Arch.CURRENT.accessOkLimit(self.userAddressLimit());
            }
        }
    }

    /** This process's limit (read once): ranges may end at it, not beyond. */
    public static long limit() {
        return Holder.LIMIT;
    }

    /**
     * {@code access_ok(addr, size)} against {@code limit}: {@code size <= limit && addr <= limit - size}, all
     * unsigned. Equivalent to x86-64's {@code addr + size} neither wrapping nor passing the limit, and to the
     * generic {@code __access_ok} arm64 uses. Size 0 at the limit passes; one byte more does not.
     */
    public static boolean ok(long addr, long size, long limit) {
        return Long.compareUnsigned(size, limit) <= 0 && Long.compareUnsigned(addr, limit - size) <= 0;
    }
}
