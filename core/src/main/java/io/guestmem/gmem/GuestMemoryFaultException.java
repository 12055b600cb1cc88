package io.guestmem.gmem;

import io.guestmem.KvmException;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;

/**
 * KVM could not map a guest access (KVM_RUN failed, typically with {@code EFAULT}), with the classifier's
 * reason: e.g. {@code EFAULT from KVM_RUN(gpa 0x100000): memfd_secret memory: removed from the kernel's direct
 * map, and get_user_pages refuses it ...}.
 */
public final class GuestMemoryFaultException extends KvmException {
    private final long gpa;
    private final MemoryClass memoryClass;

    public GuestMemoryFaultException(Errno errno, long gpa, MemoryClass memoryClass) {
        super(errno, "KVM_RUN(gpa " + Fmt.hex(gpa) + ", hva " + Fmt.hex(memoryClass.hva()) + ")",
                memoryClass.kind() + ": " + memoryClass.why());
        this.gpa = gpa;
        this.memoryClass = memoryClass;
    }

    public long gpa() {
        return gpa;
    }

    public MemoryClass memoryClass() {
        return memoryClass;
    }
}
