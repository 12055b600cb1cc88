package io.guestmem.sys;

/**
 * A vectored I/O call of {@link Uio} failed: the errno and the call as every {@link SyscallException} names
 * them ({@code EBADF from preadv(fd 7, 3 iovecs, offset 0x1000)}), and {@link #bytesDone()}, the bytes the
 * earlier calls of the same request had moved (0 unless an array longer than {@link Uio#IOV_MAX} was split
 * and a later part failed). Those bytes did move: a read into memory that tracks its writes marks them.
 */
public final class UioException extends SyscallException {
    private final long bytesDone;

    public UioException(int errno, String call, String detail, long bytesDone) {
        super(errno, call, bytesDone == 0 ? detail : (detail == null ? "" : detail + ", ") + bytesDone + " bytes moved before");
        this.bytesDone = bytesDone;
    }

    /** Bytes the request transferred before the failing call (the leading bytes of its entries). */
    public long bytesDone() {
        return bytesDone;
    }
}
