package io.guestmem;

import io.guestmem.sys.Errno;

/**
 * A request KVM's memory logic refuses, with the error code KVM itself would return
 * ({@code EEXIST} for an overlapping slot, {@code EBUSY} for relocking a locked slot, {@code EAGAIN} for a
 * conversion racing a reference ...). Syscall failures stay {@link io.guestmem.sys.SyscallException}s;
 * this is for the library's own, KVM-shaped decisions: {@code EEXIST from setMemslot(slot 3 gfn 0x100+0x200): overlaps slot 1}.
 */
public class KvmException extends RuntimeException {
    private final Errno errno;
    private final String operation;

    public KvmException(Errno errno, String operation, String reason) {
        super(errno.name() + " from " + operation + (reason == null ? "" : ": " + reason));
        this.errno = errno;
        this.operation = operation;
    }

    public Errno errno() {
        return errno;
    }

    public String operation() {
        return operation;
    }
}
