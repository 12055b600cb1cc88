package io.guestmem.lock;

import io.guestmem.KvmException;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.sys.Capabilities;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Rlimit;

/**
 * The process's locked-memory budget, as {@code try_rlimit_memlock} and {@code account_locked_vm} see it,
 * read from the kernel every time: the soft {@code RLIMIT_MEMLOCK}, the calling thread's CAP_IPC_LOCK
 * (capabilities are per thread, and so is the kernel's check) and {@code VmLck} of {@code /proc/self/status}
 * (the kernel's {@code mm->locked_vm}).
 *
 * <p>One thing the kernel's VmLck does not show: pages a memslot lock charges that mlock did not add to
 * {@code locked_vm}. mlock skips hugetlb VMAs entirely (they are never swapped, {@code mlock_fixup} leaves
 * them alone), and mlocking a range that is already locked adds nothing. KVM's {@code account_locked_vm}
 * charges a locked slot's {@code npages} regardless (a reviewer of "KVM: arm64: Implement the memslot
 * lock/unlock functionality" asked, the author kept it: "If
 * userspace wants to lock the same memory twice, then it's free to do it, and suffer any possible
 * consequences"). This account therefore keeps {@link #uncountedPages()}: the base pages of locked slots that
 * are not in VmLck.
 *
 * <p>Long-term pins ({@link PinKind#LONGTERM_PIN}, {@link LongTermPinning}) are charged by the kernel itself:
 * {@code VmPin} ({@code mm->pinned_vm}) shows them and this account adds nothing for them. The RFC charges every
 * locked slot to one {@code locked_vm}, so {@code locked_vm} here is
 * {@code (VmLck + VmPin) / PAGE_SIZE + uncountedPages}: mlocked and pinned slots share the one budget. Pages are
 * base pages of the host ({@code PAGE_SIZE}) whatever backs them, as the kernel counts {@code locked_vm}.
 */
public final class MemlockAccount {
    private final long pageSize;
    private volatile long uncountedPages; // written under MemslotLock's operation lock

    MemlockAccount(long pageSize) {
        this.pageSize = pageSize;
    }

    /** The soft RLIMIT_MEMLOCK in bytes, or -1 when unlimited. */
    public long limitBytes() {
        long soft = Rlimit.getrlimit(Rlimit.RLIMIT_MEMLOCK).soft();
        return soft == Rlimit.RLIM_INFINITY ? -1 : soft;
    }

    /** The kernel's VmLck of this process, in bytes. */
    public long vmLckBytes() {
        return ProcStatus.self().vmLck();
    }

    /** The kernel's VmPin of this process ({@code mm->pinned_vm}: long-term pins), in bytes. */
    public long vmPinBytes() {
        return ProcStatus.self().vmPin();
    }

    /** Whether the calling thread has CAP_IPC_LOCK in its effective set (then the limit does not apply). */
    public boolean capIpcLock() {
        return Capabilities.has(Capabilities.CAP_IPC_LOCK);
    }

    /** Base pages charged by locked slots that the kernel's VmLck does not include (hugetlb, locked twice). */
    public long uncountedPages() {
        return uncountedPages;
    }

    /** {@code locked_vm} as charged here: VmLck and VmPin in base pages plus {@link #uncountedPages()}. */
    public long lockedVmPages() {
        ProcStatus st = ProcStatus.self();
        return st.vmLck() / pageSize + st.vmPin() / pageSize + uncountedPages;
    }

    /**
     * {@code try_rlimit_memlock}: unless CAP_IPC_LOCK, {@code npages + locked_vm > limit} is ENOMEM. Changes
     * nothing.
     */
    void checkBefore(String op, long npages) {
        if (capIpcLock()) return;
        long limit = limitBytes();
        if (limit < 0) return;
        long locked = lockedVmPages();
        long limitPages = limit / pageSize;
        if (npages + locked > limitPages) {
            throw new KvmException(Errno.ENOMEM, op, npages + " pages (" + Fmt.size(npages * pageSize)
                    + ") + locked_vm " + locked + " pages > RLIMIT_MEMLOCK " + Fmt.size(limit) + " (" + limitPages
                    + " pages), no CAP_IPC_LOCK");
        }
    }

    /**
     * {@code account_locked_vm(mm, npages, true)} at the end of a lock: the pages are pinned now, and mlock
     * already put those it counts in VmLck (io_uring those it pins in VmPin), so only {@code extraUncounted} (this slot's pages VmLck does not
     * show) is added to what the kernel reports. The limit and the capability are read again: either may have
     * changed since {@link #checkBefore}.
     */
    void checkAfter(String op, long npages, long extraUncounted) {
        if (capIpcLock()) return;
        long limit = limitBytes();
        if (limit < 0) return;
        long locked = lockedVmPages() + extraUncounted;
        long limitPages = limit / pageSize;
        if (locked > limitPages) {
            throw new KvmException(Errno.ENOMEM, op, "after pinning " + npages + " pages, locked_vm " + locked
                    + " pages > RLIMIT_MEMLOCK " + Fmt.size(limit) + " (" + limitPages + " pages): the limit or"
                    + " CAP_IPC_LOCK changed, or other memory was locked, since the check (account_locked_vm)");
        }
    }

    void charge(long uncounted) {
        uncountedPages += uncounted;
    }

    void uncharge(long uncounted) {
        uncountedPages -= uncounted;
    }
}
