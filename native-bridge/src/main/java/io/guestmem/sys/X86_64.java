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
    @Override public int oTmpfile() { return 0x410000; } // 020200000 octal
    /**
     * 2^56: above TASK_SIZE even with 5-level paging ((2^56) - PAGE); LAM_U57 untagging clears bits 57-62
     * only, so this address stays where it is.
     */
    @Override public long pagemapProbeCeiling() { return 1L << 56; }
    /**
     * x86-64's {@code __access_ok} for a size not known at compile time: {@code sum = addr + size} must not
     * wrap and must be {@code <= USER_PTR_MAX}, which {@code arch_cpu_finalize_init} sets to
     * {@code TASK_SIZE_MAX} (since "x86: fix off-by-one in access_ok()", David Laight, 2025, also in the
     * stable kernels; from 6.2 to 6.11 the bound was the sign bit, 2^63). A 64-bit task's {@code mm->task_size} is {@code TASK_SIZE} = {@code TASK_SIZE_MAX}
     * ({@code (1 << 47) - PAGE_SIZE}, or {@code (1 << 56) - PAGE_SIZE} with 5-level paging), so the limit is
     * the task size. Not modelled: kernels that enable LAM once it is gated on LASS raise USER_PTR_MAX to
     * {@code 2^63 - PAGE_SIZE}; there KVM accepts hvas above the task size that no mapping can back.
     */
    @Override public long accessOkLimit(long taskSize) { return taskSize; }
    @Override public boolean isX86() { return true; }
}
