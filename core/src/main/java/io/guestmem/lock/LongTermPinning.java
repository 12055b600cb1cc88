package io.guestmem.lock;

import io.guestmem.KvmException;
import io.guestmem.sys.Errno;
import io.guestmem.sys.IoUring;
import io.guestmem.sys.IovecArray;
import io.guestmem.sys.SyscallException;

import java.util.ArrayList;
import java.util.List;

/**
 * Long-term pins for memslot locks, as the RFC takes them with {@code pin_user_pages(FOLL_LONGTERM |
 * FOLL_WRITE)}: the hva range is registered as io_uring fixed buffers ({@link IoUring}), split into buffers of
 * at most 1 GiB and tables of at most 16384 buffers, one ring per table. The kernel keeps the pinned pages in
 * place until they are unregistered, and unpins them when the process dies (the rings go with it).
 *
 * <h2>Accounting</h2>
 * The kernel charges these pins itself ({@code io_account_mem}): VmPin ({@code mm->pinned_vm}) always through
 * 6.18 (Debian's 7.3 leaves VmPin alone for a process with CAP_IPC_LOCK: {@link VmPinAccounting}), and,
 * without CAP_IPC_LOCK, the user's {@code locked_vm} against RLIMIT_MEMLOCK, refused with ENOMEM before
 * anything is pinned. That is this pin's {@code try_rlimit_memlock}: there is no check of the library's own
 * before it, so the ENOMEM a caller sees over the limit is the kernel's, surfaced as {@link KvmException}
 * ENOMEM naming the call. {@link MemlockAccount} does not charge the pages again (VmPin shows them); once they
 * are pinned, {@link Pin#checkCharge()} is {@code account_locked_vm}'s check of the whole budget (VmLck + VmPin
 * + uncounted mlock charges against the limit), which also holds mlocked and pinned slots together.
 *
 * <p>Two things differ from the RFC's {@code account_locked_vm}. The kernel's counter is the user's, not the
 * process's: every process of the same uid registering io_uring buffers without CAP_IPC_LOCK draws on the one
 * RLIMIT_MEMLOCK budget. And each ring's own pages are charged to it too (2 to 3 pages for the one-entry ring
 * used here, measured on 6.18: under an 8 MiB limit an 8180 KiB buffer registers, an 8188 KiB one is ENOMEM),
 * so a slot of exactly the limit does not fit without CAP_IPC_LOCK.
 *
 * <p>A {@link Pin} is all or nothing: a failure, or a close without {@link Pin#commit()}, unregisters and
 * closes every ring it set up, and VmPin is back where it was when the exception leaves. Not thread-safe: used
 * under {@link MemslotLock}'s operation lock.
 */
final class LongTermPinning {
    private final MemlockAccount account;
    private final long maxBufferBytes;
    private final int maxBuffers;

    LongTermPinning(MemlockAccount account) {
        this(account, IoUring.MAX_BUFFER_BYTES, IoUring.MAX_BUFFERS);
    }

    /** With smaller registration limits than the kernel's, so that a test can see the splitting on little memory. */
    LongTermPinning(MemlockAccount account, long maxBufferBytes, int maxBuffers) {
        if (maxBufferBytes <= 0 || maxBufferBytes > IoUring.MAX_BUFFER_BYTES || maxBuffers <= 0 || maxBuffers > IoUring.MAX_BUFFERS)
            throw new IllegalArgumentException("limits beyond the kernel's: " + maxBufferBytes + " bytes, " + maxBuffers + " buffers");
        this.account = account;
        this.maxBufferBytes = maxBufferBytes;
        this.maxBuffers = maxBuffers;
    }

    /** What a committed pin holds: its rings, each with one registered table. */
    record Held(List<IoUring> rings) {
        Held {
            rings = List.copyOf(rings);
        }
    }

    /** Begins a pin of {@code [start, end)} ({@code npages} base pages); nothing is pinned until {@link Pin#pin()}. */
    Pin begin(String op, long start, long end, long npages) {
        if (start >= end) throw new IllegalArgumentException("empty range");
        return new Pin(op, start, end, npages);
    }

    /**
     * Unregisters and closes every ring of {@code held}: VmPin drops at once.
     *
     * @throws SyscallException the first failure (the rest suppressed), after trying all
     */
    void release(Held held) {
        SyscallException first = null;
        for (IoUring r : held.rings()) {
            SyscallException e = unpin(r);
            if (e != null) {
                if (first == null) first = e;
                else first.addSuppressed(e);
            }
        }
        if (first != null) throw first;
    }

    private static SyscallException unpin(IoUring ring) {
        SyscallException failure = null;
        try {
            ring.unregisterBuffers();
        } catch (SyscallException e) {
            failure = e;
        }
        try {
            ring.close();
        } catch (SyscallException e) {
            if (failure == null) failure = e;
            else failure.addSuppressed(e);
        }
        return failure;
    }

    /** One long-term pin in progress: undone by {@link #close()} unless {@link #commit()}ted. */
    final class Pin implements AutoCloseable {
        private final String op;
        private final long start, end, npages;
        private final List<IoUring> rings = new ArrayList<>();
        private boolean committed;

        private Pin(String op, long start, long end, long npages) {
            this.op = op;
            this.start = start;
            this.end = end;
            this.npages = npages;
        }

        /**
         * Registers the range: buffers of at most {@link IoUring#MAX_BUFFER_BYTES}, at most
         * {@link IoUring#MAX_BUFFERS} a ring. On failure every ring already registered is released first.
         *
         * @throws KvmException ENOMEM for any refusal, as the RFC reports a failed pin; the kernel's
         *                      {@link SyscallException} is the cause (ENOMEM over the limit or out of memory,
         *                      EFAULT for a page that cannot be pinned writable, e.g. a regular file's shared
         *                      mapping, EOPNOTSUPP on kernels that refuse file-backed buffers)
         */
        void pin() {
            long pos = start;
            while (pos < end) {
                long tableEnd = end - pos <= maxBufferBytes * maxBuffers ? end : pos + maxBufferBytes * maxBuffers;
                int n = (int) ((tableEnd - pos + maxBufferBytes - 1) / maxBufferBytes);
                try (IovecArray iov = IovecArray.allocate(n)) {
                    for (int i = 0; i < n; i++) {
                        long b = pos + i * maxBufferBytes;
                        iov.set(i, b, Math.min(maxBufferBytes, tableEnd - b));
                    }
                    IoUring ring;
                    try {
                        ring = IoUring.setup(1);
                    } catch (SyscallException e) {
                        throw fail(e);
                    }
                    rings.add(ring); // before registering: a ring that failed to register is still to close
                    try {
                        ring.registerBuffers(iov);
                    } catch (SyscallException e) {
                        throw fail(e);
                    }
                }
                pos = tableEnd;
            }
        }

        /**
         * The RFC reports any failed pin as ENOMEM; the kernel's own errno stays readable in the message and as
         * the cause (EFAULT there lets {@link MemslotLock} fall back to mlock for a file GUP will not pin).
         */
        private KvmException fail(SyscallException e) {
            String why;
            if (!e.is(Errno.ENOMEM)) {
                why = "";
            } else if (account.capIpcLock()) {
                why = " (with CAP_IPC_LOCK no limit applies: the kernel ran out of memory)";
            } else {
                long limit = account.limitBytes();
                why = " (io_uring charges the pins to the user's locked_vm against RLIMIT_MEMLOCK "
                        + (limit < 0 ? "unlimited" : io.guestmem.sys.Fmt.size(limit))
                        + " without CAP_IPC_LOCK, __io_account_mem; or memory ran out)";
            }
            KvmException thrown = new KvmException(Errno.ENOMEM, op, "the kernel refused to pin [0x"
                    + Long.toHexString(start) + ", 0x" + Long.toHexString(end) + ") long-term: " + e.getMessage() + why);
            thrown.initCause(e);
            rollback(thrown);
            return thrown;
        }

        /**
         * {@code account_locked_vm} once the pages are pinned: VmLck + VmPin + uncounted mlock charges must fit
         * the limit (read again, with the capability).
         *
         * @throws KvmException ENOMEM when they do not (then close the pin)
         */
        void checkCharge() {
            account.checkAfter(op, npages, 0);
        }

        /** What this pin holds once committed: the rings registered so far. */
        Held held() {
            return new Held(rings);
        }

        /** Makes the pin count: {@link #close()} no longer undoes it. Cannot fail. */
        void commit() {
            committed = true;
        }

        /** Undoes an uncommitted pin (unregisters what it registered); nothing once committed. Idempotent. */
        @Override
        public void close() {
            if (!committed) rollback(null);
        }

        private void rollback(Throwable primary) {
            Rollback.inReverse(rings, Pin::unregister, primary);
        }

        /** Unregisters a ring's buffers and closes it. */
        private static SyscallException unregister(IoUring r) {
            SyscallException e = null;
            // A ring whose registration failed has no table: EINVAL/ENXIO from unregister is expected there.
            try {
                r.unregisterBuffers();
            } catch (SyscallException u) {
                if (!u.is(Errno.ENXIO) && !u.is(Errno.EINVAL)) e = u;
            }
            try {
                r.close();
            } catch (SyscallException c) {
                if (e == null) e = c;
            }
            return e;
        }
    }
}
