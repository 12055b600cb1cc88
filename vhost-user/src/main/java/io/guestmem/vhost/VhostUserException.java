package io.guestmem.vhost;

import io.guestmem.sys.Errno;
import io.guestmem.sys.ErrnoException;

/**
 * A front-end's message this back-end refuses, with the errno that says why: EPROTO (a header that breaks the
 * framing: truncated, wrong version), EMSGSIZE (a payload larger than any request has), ENOSYS (a request
 * this back-end does not know or did not offer), EBADMSG (a payload or descriptor count that does not fit
 * the request), EINVAL/EFAULT (values that do not fit the device or its memory). The session that meets one
 * closes the connection and logs the message; nothing it received stays open.
 */
public final class VhostUserException extends ErrnoException {
    private final Errno errno;

    public VhostUserException(Errno errno, String request, String detail) {
        super(errno.number, "vhost-user " + request, detail);
        this.errno = errno;
    }

    public Errno errno() {
        return errno;
    }
}
