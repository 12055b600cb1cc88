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
    /**
     * 2^55: above TASK_SIZE (at most 2^52 with 52-bit VAs); untagged_addr sign-extends bit 55 (TBI ignores the
     * top byte), which turns it into a kernel address rather than aliasing a user one as 2^60 does.
     */
    @Override public long pagemapProbeCeiling() { return 1L << 55; }
    @Override public boolean isX86() { return false; }
}
