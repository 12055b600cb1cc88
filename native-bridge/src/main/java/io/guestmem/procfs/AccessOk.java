package io.guestmem.procfs;

import io.guestmem.sys.Arch;

/**
 * The kernel's {@code access_ok} for this process: the limit a user range may reach, read from the machine
 * (mm->task_size found in pagemap, refined by the architecture: {@link Arch#accessOkLimit}), and the range
 * rule itself. KVM applies it to a memslot's {@code [userspace_addr, userspace_addr + memory_size)}.
 */
public final class AccessOk {
    private AccessOk() {}

    private static volatile long limit; // 0 until read

    /**
     * This process's limit (read once): ranges may end at it, not beyond. A machine whose pagemap cannot be read
     * gives the reader's exception here, every time (no limit is guessed).
     */
    public static long limit() {
        long l = limit;
        if (l == 0) {
            try (Pagemap self = Pagemap.openSelf()) {
                limit = l = Arch.CURRENT.accessOkLimit(self.userAddressLimit());
            }
        }
        return l;
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
