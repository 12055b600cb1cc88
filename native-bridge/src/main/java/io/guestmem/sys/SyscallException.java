package io.guestmem.sys;

/**
 * A system call failed. Carries the errno number, its symbolic name and the call with its arguments,
 * e.g. {@code ENOMEM from mlock(0x7f2a40000000, 2 MiB)}.
 */
public class SyscallException extends RuntimeException {
    private final int errno;
    private final String call;

    public SyscallException(int errno, String call) {
        this(errno, call, null);
    }

    public SyscallException(int errno, String call, String detail) {
        super(Errno.nameOf(errno) + " from " + call + (detail == null ? "" : ": " + detail));
        this.errno = errno;
        this.call = call;
    }

    public int errno() {
        return errno;
    }

    /** The symbolic name, e.g. {@code EINVAL}. */
    public String errnoName() {
        return Errno.nameOf(errno);
    }

    /** The errno as an enum constant, or null if this table has no name for it. */
    public Errno errnoEnum() {
        return Errno.of(errno);
    }

    /** The failed call with its arguments, e.g. {@code mlock(0x7f2a40000000, 2 MiB)}. */
    public String call() {
        return call;
    }

    public boolean is(Errno e) {
        return errno == e.number;
    }
}
