package io.guestmem.sys;

/**
 * A system call failed. Carries the errno number, its symbolic name and the call with its arguments,
 * e.g. {@code ENOMEM from mlock(0x7f2a40000000, 2 MiB)} (the format and accessors are {@link ErrnoException}'s).
 */
public class SyscallException extends ErrnoException {
    public SyscallException(int errno, String call) {
        this(errno, call, null);
    }

    public SyscallException(int errno, String call, String detail) {
        super(errno, call, detail);
    }

    /** The errno number the kernel returned (it may be one {@link Errno} has no name for). */
    public int errno() {
        return errnoNumber();
    }
}
