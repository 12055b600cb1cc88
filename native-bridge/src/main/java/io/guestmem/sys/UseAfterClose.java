package io.guestmem.sys;

/**
 * The failure of every use of a closed object of the library: an {@link IllegalStateException} that names the
 * object and the call, e.g. {@code vcpu fd 14 is closed: ioctl(KVM_RUN)}. A check costs the open path a field
 * read and a branch: the call is passed as a constant and the message is built only when thrown.
 */
public final class UseAfterClose {
    private UseAfterClose() {}

    /** The exception for {@code call} on the closed {@code object} (its {@code toString} names it). */
    public static IllegalStateException of(Object object, String call) {
        return new IllegalStateException(object + " is closed: " + call);
    }
}
