package io.guestmem.sys;

/** arm64 syscall numbers (include/uapi/asm-generic/unistd.h). */
public record Aarch64() implements Arch {
    @Override public String name() { return "aarch64"; }
    @Override public long sysMemfdSecret() { return 447; }
    @Override public long sysUserfaultfd() { return 282; }
    @Override public long sysMlock2() { return 284; }
    @Override public long sysMemfdCreate() { return 279; }
    @Override public long sysCapget() { return 90; }
    @Override public long sysPrlimit64() { return 261; }
    @Override public long sysMbind() { return 235; }
    @Override public long sysGetMempolicy() { return 236; }
    @Override public long sysPerfEventOpen() { return 241; }
    @Override public long sysPidfdOpen() { return 434; }
    @Override public long sysPidfdGetfd() { return 438; }
    @Override public long sysIoUringSetup() { return 425; }
    @Override public long sysIoUringRegister() { return 427; }
    @Override public long sysMovePages() { return 239; }
    @Override public int oTmpfile() { return 0x404000; } // 020040000 octal
    /**
     * 2^55: above TASK_SIZE (at most 2^52 with 52-bit VAs); untagged_addr sign-extends bit 55 (TBI ignores the
     * top byte), which turns it into a kernel address rather than aliasing a user one as 2^60 does.
     */
    @Override public long pagemapProbeCeiling() { return 1L << 55; }
    /**
     * arm64's {@code access_ok} is {@code __access_ok(untagged_addr(p), size)} against
     * {@code TASK_SIZE_MAX = 1 << VA_BITS}, the configured VA size, while {@code mm->task_size} is
     * {@code 1 << vabits_actual}. The two differ only for a 52-bit-VA kernel on a CPU without 52-bit VAs, so
     * the configured {@code CONFIG_ARM64_VA_BITS} is read from the kernel configuration where the machine has
     * one ({@link KernelConfig}); without it the task size is the limit. (KVM refuses a tagged hva before
     * access_ok: {@code userspace_addr != untagged_addr(userspace_addr)}; a tagged address is above the limit
     * anyway, so the range check gives the same EINVAL.)
     */
    @Override public long accessOkLimit(long taskSize) {
        int bits = KernelConfig.running().intValue("CONFIG_ARM64_VA_BITS", 0);
        return bits > 0 && bits < 63 ? Math.max(taskSize, 1L << bits) : taskSize;
    }
    @Override public boolean isX86() { return false; }
}
