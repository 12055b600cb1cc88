package io.guestmem.sys;

/** x86-64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
public record X86_64() implements Arch {
    @Override public String name() { return "x86_64"; }
    @Override public long sysMemfdSecret() { return 447; }
    @Override public long sysUserfaultfd() { return 323; }
    @Override public long sysMlock2() { return 325; }
    @Override public long sysMemfdCreate() { return 319; }
    @Override public long sysCapget() { return 125; }
    @Override public long sysPrlimit64() { return 302; }
    @Override public long sysMbind() { return 237; }
    @Override public long sysGetMempolicy() { return 239; }
    @Override public long sysPerfEventOpen() { return 298; }
    @Override public long sysPidfdOpen() { return 434; }
    @Override public long sysPidfdGetfd() { return 438; }
    @Override public long sysIoUringSetup() { return 425; }
    @Override public long sysIoUringRegister() { return 427; }
    @Override public long sysMovePages() { return 279; }
    /**
     * 2^56: above TASK_SIZE even with 5-level paging ((2^56) - PAGE); LAM_U57 untagging clears bits 57-62
     * only, so this address stays where it is.
     */
    @Override public long pagemapProbeCeiling() { return 1L << 56; }
    @Override public boolean isX86() { return true; }
}
