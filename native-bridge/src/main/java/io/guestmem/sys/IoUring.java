package io.guestmem.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * An io_uring instance used only for its fixed-buffer table: {@code io_uring_setup} and
 * {@code io_uring_register(IORING_REGISTER_BUFFERS / IORING_UNREGISTER_BUFFERS)} through the raw syscalls (no
 * liburing). Registering buffers is the one way userspace takes long-term pins: {@code io_sqe_buffers_register}
 * pins every page with {@code pin_user_pages_fast(FOLL_WRITE | FOLL_LONGTERM)} ({@code io_pin_pages}), which
 * migrates pages out of ZONE_MOVABLE/CMA first and keeps them in place until they are unregistered; the ring
 * is never mapped or submitted to.
 *
 * <h2>What the kernel charges</h2>
 * {@code io_account_mem}: the pinned pages are added to {@code mm->pinned_vm} ({@code VmPin} of
 * {@code /proc/self/status}) and, when the ring was created without CAP_IPC_LOCK ({@code ctx->user} is only
 * taken then), to the user's {@code locked_vm}, refused with ENOMEM when that passes RLIMIT_MEMLOCK
 * ({@code __io_account_mem}, checked and charged atomically before anything is pinned). Pages of a large
 * folio are charged as the whole folio, once per table ({@code io_buffer_account_pin}). The ring's own memory is
 * charged to the user's {@code locked_vm} as well (not to VmPin): a few pages per ring.
 *
 * <h2>Limits</h2>
 * One buffer is at most {@link #MAX_BUFFER_BYTES} (1 GiB, else EFAULT from {@code io_buffer_validate}), one
 * table at most {@link #MAX_BUFFERS} buffers (else EINVAL), and a table is registered once (EBUSY while one is
 * registered). Pages must be writable (FOLL_WRITE): a read-only mapping is EFAULT. Closing the fd unpins too,
 * but only when the ring's teardown work runs ({@code io_ring_exit_work}, asynchronous), so
 * {@link #unregisterBuffers()} is the call that unpins at once.
 */
public final class IoUring implements AutoCloseable {
    /** {@code SZ_1G}: the largest buffer {@code io_buffer_validate} accepts. */
    public static final long MAX_BUFFER_BYTES = 1L << 30;
    /** {@code IORING_MAX_REG_BUFFERS}: the most buffers one table holds. */
    public static final int MAX_BUFFERS = 1 << 14;

    static final int IORING_REGISTER_BUFFERS = 0, IORING_UNREGISTER_BUFFERS = 1;
    /** {@code sizeof(struct io_uring_params)}: 7 u32, resv[3], then the two 40-byte offset structs. */
    static final long PARAMS_SIZE = 120;

    private final int fd;
    private boolean closed;

    private IoUring(int fd) {
        this.fd = fd;
    }

    /**
     * {@code io_uring_setup(entries, &params)} with zeroed params.
     *
     * @throws SyscallException e.g. ENOMEM (the ring's own pages are charged like buffers on recent kernels),
     *                          EPERM when {@code kernel.io_uring_disabled} forbids it, ENOSYS without io_uring
     */
    public static IoUring setup(int entries) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment params = a.allocate(PARAMS_SIZE, 8);
            long r = Posix.syscallRaw(Arch.CURRENT.sysIoUringSetup(), entries, params.address(), 0, 0, 0, 0);
            if (r < 0) throw new SyscallException((int) -r, "io_uring_setup(" + entries + ")");
            return new IoUring((int) r);
        }
    }

    public int fd() {
        return fd;
    }

    /**
     * {@code io_uring_register(fd, IORING_REGISTER_BUFFERS, iov, n)}: pins every page of every entry
     * long-term. All or nothing: on failure the kernel has unpinned and uncharged whatever it had taken.
     *
     * @throws SyscallException ENOMEM over RLIMIT_MEMLOCK (or out of memory), EFAULT for an unmapped or
     *                          read-only page or a buffer over 1 GiB, EINVAL over {@link #MAX_BUFFERS}, EBUSY
     *                          when a table is registered, EOPNOTSUPP for a file mapping GUP will not pin
     *                          long-term
     */
    public void registerBuffers(IovecArray iov) {
        checkOpen("registerBuffers");
        MemorySegment arr = iov.from(0, "io_uring_register");
        long r = Posix.syscallRaw(Arch.CURRENT.sysIoUringRegister(), fd, IORING_REGISTER_BUFFERS, arr.address(),
                iov.count(), 0, 0);
        if (r < 0) {
            throw new SyscallException((int) -r, "io_uring_register(fd " + fd + ", IORING_REGISTER_BUFFERS, "
                    + iov.count() + " buffers, " + Fmt.size(iov.totalLength()) + ")");
        }
    }

    /** {@code io_uring_register(fd, IORING_UNREGISTER_BUFFERS)}: unpins and uncharges the table at once. */
    public void unregisterBuffers() {
        checkOpen("unregisterBuffers");
        long r = Posix.syscallRaw(Arch.CURRENT.sysIoUringRegister(), fd, IORING_UNREGISTER_BUFFERS, 0, 0, 0, 0);
        if (r < 0) throw new SyscallException((int) -r, "io_uring_register(fd " + fd + ", IORING_UNREGISTER_BUFFERS)");
    }

    private void checkOpen(String call) {
        if (closed) throw UseAfterClose.of(this, call);
    }

    /** Closes the fd (a table still registered is released by the ring's asynchronous teardown). Idempotent. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        Posix.close(fd);
    }

    @Override
    public String toString() {
        return "io_uring fd " + fd;
    }
}
