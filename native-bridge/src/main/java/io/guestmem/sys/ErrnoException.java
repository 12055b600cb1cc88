package io.guestmem.sys;

/**
 * A failure that carries a Linux errno and the call that produced it, with the one message format of the
 * library: {@code ENOMEM from mlock(0x7f2a40000000, 2 MiB)}, then {@code ": "} and a detail when there is one.
 *
 * <p>Two kinds extend it: {@link SyscallException}, where the kernel returned the errno (its number may be one
 * {@link Errno} has no name for), and {@code io.guestmem.KvmException}, where the library's reimplementation of
 * KVM refuses a request with the code KVM itself would return. A caller that only needs "which errno, from
 * which call" catches this base; the subclasses keep their own {@code errno()} accessor (a number for a
 * syscall, an {@link Errno} for a KVM decision).
 */
public abstract class ErrnoException extends RuntimeException {
    private final int errno;
    private final String call;
    private final String detail;

    protected ErrnoException(int errno, String call, String detail) {
        super(message(errno, call, detail));
        this.errno = errno;
        this.call = call;
        this.detail = detail;
    }

    /** The message every errno-bearing failure uses: {@code EINVAL from call: detail} ({@code errno 999 ...} without a name). */
    public static String message(int errno, String call, String detail) {
        return Errno.nameOf(errno) + " from " + call + (detail == null ? "" : ": " + detail);
    }

    /** The errno number, e.g. 12. */
    public final int errnoNumber() {
        return errno;
    }

    /** The symbolic name, e.g. {@code ENOMEM}, or {@code errno 999} for a number without one. */
    public final String errnoName() {
        return Errno.nameOf(errno);
    }

    /** The errno as an enum constant, or null if {@link Errno} has no name for the number. */
    public final Errno errnoEnum() {
        return Errno.of(errno);
    }

    /** The failed call with its arguments, e.g. {@code mlock(0x7f2a40000000, 2 MiB)}. */
    public final String call() {
        return call;
    }

    /** What the message adds after the call (why, what was tried), or null. */
    public final String detail() {
        return detail;
    }

    public final boolean is(Errno e) {
        return errno == e.number;
    }
}
