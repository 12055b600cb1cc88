package io.guestmem.sys;

import org.apache.commons.lang3.ArchUtils;
import org.apache.commons.lang3.arch.Processor;

/**
 * The architecture-specific numbers the bridge needs: system calls without a libc wrapper and the
 * few constants that differ. One implementation per architecture ({@link X86_64}, {@link Aarch64});
 * nothing outside those two classes spells an architecture's number.
 */
public sealed interface Arch permits X86_64, Aarch64 {

    /** The architecture this JVM runs on. */
    Arch CURRENT = detect();

    String name();

    long sysMemfdSecret();

    long sysUserfaultfd();

    long sysMlock2();

    long sysMemfdCreate();

    long sysCapget();

    long sysPrlimit64();

    long sysMbind();

    long sysGetMempolicy();

    long sysPerfEventOpen();

    long sysPidfdOpen();

    long sysPidfdGetfd();

    long sysIoUringSetup();

    long sysIoUringRegister();

    long sysMovePages();

    /**
     * {@code O_TMPFILE}: {@code __O_TMPFILE | O_DIRECTORY}, where {@code O_DIRECTORY} differs (x86-64
     * {@code 0200000}, the generic {@code 040000} on arm64).
     */
    int oTmpfile();

    /**
     * An address above every user address space that the kernel's address untagging leaves above it, so
     * {@code pagemap_read} reports nothing there: where a bisection for mm->task_size may start.
     */
    long pagemapProbeCeiling();

    /**
     * The end that the kernel's {@code access_ok} lets a user range reach, for a 64-bit process whose
     * {@code mm->task_size} is {@code taskSize} (read from pagemap by {@code io.guestmem.procfs.AccessOk}):
     * {@code access_ok(addr, size)} holds exactly when {@code size <= limit && addr <= limit - size}
     * (unsigned), so a range may end at the limit itself and a size-0 range may start there. Both
     * architectures have that form; they differ in where the limit comes from.
     */
    long accessOkLimit(long taskSize);

    /** True where KVM's x86 ioctls (REGS/SREGS, TSS) and real-mode guests exist. */
    boolean isX86();

    private static Arch detect() {
        Processor p = ArchUtils.getProcessor();
        if (p != null && p.is64Bit() && p.isX86()) return new X86_64();
        if (p != null && p.is64Bit() && p.isAarch64()) return new Aarch64();
        throw new UnsupportedOperationException("guestmem supports x86-64 and arm64; this JVM reports os.arch="
                + System.getProperty("os.arch"));
    }
}
