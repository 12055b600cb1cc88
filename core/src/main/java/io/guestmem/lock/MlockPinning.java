package io.guestmem.lock;

import io.guestmem.KvmException;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Mman;
import io.guestmem.sys.SyscallException;

import java.util.ArrayList;
import java.util.List;

/**
 * The mlock pinning behind memslot locks of memory that cannot be pinned long-term ({@link PinKind#MLOCK}: a
 * READ lock of a read-only mapping; writable memory is pinned by {@link LongTermPinning}): host memory is
 * mlocked, charged against RLIMIT_MEMLOCK unless the
 * calling thread has CAP_IPC_LOCK ({@link MemlockAccount}), and every hold on a range is counted
 * ({@link HvaLockRefs}) because the kernel does not count mlocks: two slots over the same hva range each hold
 * it, and the range is munlocked when the last hold is released.
 *
 * <p>A {@link Pin} is all or nothing. It checks the limit before anything changes ({@code try_rlimit_memlock}),
 * mlocks the ranges no other hold covers, checks the charge again once the pages are pinned
 * ({@code account_locked_vm}), and only {@link Pin#commit()} makes it count. A pin closed without a commit, or
 * one whose mlock failed, munlocks every range it locked, including the part of the range that failed: the
 * kernel's mlock of a range with a hole locks the VMAs before the hole and then returns ENOMEM, and one whose
 * populate fails leaves the VMAs locked, so the failed call alone may already have raised VmLck.
 *
 * <p>Not thread-safe: used under {@link MemslotLock}'s operation lock.
 */
final class MlockPinning {
    private final MemlockAccount account;
    private final HvaLockRefs refs = new HvaLockRefs();

    MlockPinning(MemlockAccount account) {
        this.account = account;
    }

    MemlockAccount account() {
        return account;
    }

    /** The parts of {@code r} that holds of this pinning cover already. */
    List<HvaRange> heldParts(HvaRange r) {
        return refs.held(r);
    }

    /** Whether no range is held. */
    boolean isEmpty() {
        return refs.isEmpty();
    }

    /**
     * Begins a pin that will hold {@code hold} and charge {@code npages} base pages. The pages of {@code hold}
     * that this pin does not mlock itself (another hold has them) are charged as uncounted, as
     * {@code account_locked_vm} charges a slot's pages whoever locked them.
     *
     * @throws KvmException ENOMEM from {@code op} when {@code npages + locked_vm > RLIMIT_MEMLOCK} without
     *                      CAP_IPC_LOCK; nothing is changed
     */
    Pin begin(String op, List<HvaRange> hold, long npages) {
        List<HvaRange> toMlock = new ArrayList<>();
        for (HvaRange h : hold) toMlock.addAll(refs.unheld(h));
        long counted = 0;
        for (HvaRange r : toMlock) counted += r.pages();
        account.checkBefore(op, npages);
        return new Pin(op, List.copyOf(hold), List.copyOf(toMlock), npages, npages - counted);
    }

    /**
     * Releases a committed pin's hold: munlocks the parts no other hold covers and uncharges its uncounted
     * pages. An ENOMEM from munlock (the range was unmapped while held) is ignored: nothing is locked there.
     *
     * @throws SyscallException the first other munlock failure (the rest suppressed), after releasing all
     */
    void release(List<HvaRange> hold, long uncounted) {
        account.uncharge(uncounted);
        SyscallException failure = null;
        for (HvaRange h : hold) {
            for (HvaRange r : refs.release(h)) {
                try {
                    Mman.munlock(r.start(), r.length());
                } catch (SyscallException e) {
                    if (!e.is(Errno.ENOMEM)) {
                        if (failure == null) failure = e;
                        else failure.addSuppressed(e);
                    }
                }
            }
        }
        if (failure != null) throw failure;
    }

    /** One pin in progress: undone by {@link #close()} unless {@link #commit()}ted. */
    final class Pin implements AutoCloseable {
        private final String op;
        private final List<HvaRange> hold;
        private final List<HvaRange> toMlock;
        private final long npages;
        private final long uncounted;
        private final List<HvaRange> locked = new ArrayList<>();
        private boolean committed;

        private Pin(String op, List<HvaRange> hold, List<HvaRange> toMlock, long npages, long uncounted) {
            this.op = op;
            this.hold = hold;
            this.toMlock = toMlock;
            this.npages = npages;
            this.uncounted = uncounted;
        }

        /** What this pin holds once committed. */
        List<HvaRange> hold() {
            return hold;
        }

        /** The ranges this pin mlocks itself (the parts of its hold no other hold covers). */
        List<HvaRange> toMlock() {
            return toMlock;
        }

        /** Charged pages the kernel's VmLck will not show (hugetlb, or held by another pin already). */
        long uncountedPages() {
            return uncounted;
        }

        /**
         * mlocks every range of {@link #toMlock()}. On failure everything this pin locked, the failed range
         * included, is munlocked before the exception leaves.
         *
         * @throws KvmException ENOMEM when the kernel refused for lack of memory or of the limit (its ENOMEM or
         *                      EAGAIN is the cause)
         * @throws SyscallException any other refusal of mlock
         */
        void mlock() {
            for (HvaRange r : toMlock) {
                locked.add(r); // before the call: a failed mlock may have locked a part of r
                try {
                    Mman.mlock(r.start(), r.length());
                } catch (SyscallException e) {
                    RuntimeException thrown = e;
                    if (e.is(Errno.ENOMEM) || e.is(Errno.EAGAIN)) {
                        thrown = new KvmException(Errno.ENOMEM, op, "the kernel refused to lock " + r + " (" + e.getMessage() + ")");
                        thrown.initCause(e);
                    }
                    rollback(thrown);
                    throw thrown;
                }
            }
        }

        /**
         * {@code account_locked_vm} once the pages are pinned: the limit and the capability are read again.
         *
         * @throws KvmException ENOMEM when the charge no longer fits (then close the pin)
         */
        void checkCharge() {
            account.checkAfter(op, npages, uncounted);
        }

        /** Makes the pin count: its ranges are held and its uncounted pages charged. Cannot fail. */
        void commit() {
            for (HvaRange h : hold) refs.hold(h);
            account.charge(uncounted);
            committed = true;
        }

        /** Undoes an uncommitted pin (munlocks what it locked); nothing once committed. Idempotent. */
        @Override
        public void close() {
            if (!committed) rollback(null);
        }

        private void rollback(Throwable primary) {
            Rollback.inReverse(locked, Pin::munlock, primary);
        }

        private static SyscallException munlock(HvaRange r) {
            try {
                Mman.munlock(r.start(), r.length());
                return null;
            } catch (SyscallException u) {
                // ENOMEM: a hole in the range (what made mlock fail); the VMAs before it are unlocked anyway.
                return u.is(Errno.ENOMEM) ? null : u;
            }
        }
    }
}
