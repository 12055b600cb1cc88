package io.guestmem.lock;

import io.guestmem.host.HostRegion;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.sys.IoUring;
import io.guestmem.sys.IovecArray;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.lang.foreign.ValueLayout;

/**
 * Whether this kernel shows this process's long-term pins (io_uring fixed buffers) in {@code VmPin}
 * ({@code mm->pinned_vm}), measured once by registering one page. Kernels through 6.18 add every
 * registration to {@code pinned_vm} ({@code io_account_mem} charges {@code ctx->mm_account} whatever the
 * capabilities); Debian's 7.3 kernel does not for a process with CAP_IPC_LOCK (measured on the arm64 runner:
 * VmPin stays 0 while the pages are pinned, and the pins still hold: MADV_COLLAPSE of them is EAGAIN). The
 * pin is the same either way; only the kernel's bookkeeping of it differs, so what the library reports
 * (VmPin, locked_vm) is read from the kernel and a test asserts the growth the kernel really shows.
 */
public final class VmPinAccounting {
    private VmPinAccounting() {}

    private static final class Measured {
        static final boolean SHOWN = measure();
    }

    /** True when a registration by this process raises its VmPin by the pinned size. */
    public static boolean showsLongTermPins() {
        return Measured.SHOWN;
    }

    /** What a long-term pin of {@code bytes} adds to VmPin here: {@code bytes}, or 0 where the kernel does not show it. */
    public static long shownBytes(long bytes) {
        return showsLongTermPins() ? bytes : 0;
    }

    private static boolean measure() {
        long page = Posix.PAGE_SIZE;
        try (HostRegion r = HostRegion.anonymous(page).create(); IovecArray iov = IovecArray.allocate(1)) {
            r.segment().set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
            iov.set(0, r.address(), page);
            try (IoUring ring = IoUring.setup(1)) {
                long before = ProcStatus.self().vmPin();
                ring.registerBuffers(iov);
                long after = ProcStatus.self().vmPin();
                ring.unregisterBuffers();
                return after - before == page;
            } catch (SyscallException e) {
                return false; // no io_uring here: nothing is pinned long-term, nothing shows
            }
        }
    }
}
