package io.guestmem.sys;

/**
 * {@code pidfd_open} and {@code pidfd_getfd}: a duplicate of another process's open file, the same open file
 * description (as SCM_RIGHTS would pass it). What a vhost-user style back-end needs for files that cannot be
 * reopened through /proc/PID/fd/N (a guest_memfd is an anonymous inode: that open fails with ENXIO).
 * Needs PTRACE_MODE_ATTACH rights over the target (same user and ptrace allowed, or CAP_SYS_PTRACE).
 */
public final class Pidfd {
    private Pidfd() {}

    /** {@code pidfd_open(pid, 0)}; the caller closes the result. */
    public static int open(int pid) {
        long r = Posix.syscallRaw(Arch.CURRENT.sysPidfdOpen(), pid, 0, 0, 0, 0, 0);
        if (r < 0) throw new SyscallException((int) -r, "pidfd_open(" + pid + ")");
        return (int) r;
    }

    /** {@code pidfd_getfd(pidfd, targetFd, 0)}: this process's new fd (close-on-exec) for the target's file. */
    public static int getfd(int pidfd, int targetFd) {
        long r = Posix.syscallRaw(Arch.CURRENT.sysPidfdGetfd(), pidfd, targetFd, 0, 0, 0, 0);
        if (r < 0) throw new SyscallException((int) -r, "pidfd_getfd(pidfd " + pidfd + ", fd " + targetFd + ")");
        return (int) r;
    }

    /** A duplicate of fd {@code targetFd} of process {@code pid}. */
    public static int dupFrom(int pid, int targetFd) {
        int pidfd = open(pid);
        try {
            return getfd(pidfd, targetFd);
        } finally {
            Posix.close(pidfd);
        }
    }
}
