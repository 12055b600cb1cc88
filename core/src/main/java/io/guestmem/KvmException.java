package io.guestmem;

import io.guestmem.sys.Errno;
import io.guestmem.sys.ErrnoException;

/**
 * A request KVM's memory logic refuses, with the error code KVM itself would return
 * ({@code EEXIST} for an overlapping slot, {@code EBUSY} for relocking a locked slot, {@code EAGAIN} for a
 * conversion racing a reference ...). Syscall failures stay {@link io.guestmem.sys.SyscallException}s;
 * this is for the library's own, KVM-shaped decisions: {@code EEXIST from setMemslot(slot 3 gfn 0x100+0x200): overlaps slot 1}.
 * Both are {@link ErrnoException}s: one message format, one set of accessors.
 */
public class KvmException extends ErrnoException {
    private final Errno errno;

    public KvmException(Errno errno, String operation, String reason) {
        super(errno.number, operation, reason);
        this.errno = errno;
    }

    /** KVM's error code (always one with a name: KVM's decisions use the named codes). */
    public Errno errno() {
        return errno;
    }

    /** The refused operation with its arguments; the same as {@link #call()}. */
    public String operation() {
        return call();
    }
}
