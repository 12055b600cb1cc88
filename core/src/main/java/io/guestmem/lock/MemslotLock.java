package io.guestmem.lock;

import io.guestmem.KvmException;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotObserver;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.mmu.DirtyLog;
import io.guestmem.mmu.Invalidation;
import io.guestmem.mmu.InvalidationListener;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.mmu.SlotLocks;
import io.guestmem.mmu.WriteFaultHook;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.Smaps;
import io.guestmem.procfs.Vma;
import io.guestmem.procfs.VmFlag;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Mman;
import io.guestmem.sys.SyscallException;
import io.guestmem.sys.UseAfterClose;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Memslot lock/unlock: arm64's {@code kvm_mmu_lock_memslot} / {@code kvm_mmu_unlock_memslot} from the patch
 * "KVM: arm64: Implement the memslot lock/unlock functionality" (Alexandru Elisei, RFC PATCH v5 03/38 of the
 * series "KVM: arm64: Add Statistical Profiling Extension (SPE) support", 2021,
 * <a href="https://lore.kernel.org/all/?q=s%3A%22Implement+the+memslot+lock%2Funlock+functionality%22">lore</a>),
 * on real host memory. Locking pins every page of a slot and records each page's pfn, read from pagemap, as the
 * slot's "stage-2 mapping" ({@link #stage2}).
 *
 * <h2>How pages are pinned ({@link PinKind})</h2>
 * The RFC pins with {@code pin_user_pages(FOLL_LONGTERM)}, so the recorded pfns stay valid. Here a slot whose
 * memory is mapped writable is pinned the same way, long-term, through io_uring buffer registration
 * ({@link LongTermPinning}, {@code FOLL_WRITE | FOLL_LONGTERM}); the kernel charges those pins itself (VmPin, and
 * RLIMIT_MEMLOCK without CAP_IPC_LOCK). Memory that cannot be pinned writable (a READ lock of a read-only
 * mapping; a regular file's shared mapping, which GUP refuses to pin long-term for write; any memory on a kernel
 * without io_uring or with {@code kernel.io_uring_disabled} set) is mlocked instead
 * ({@link MlockPinning}): resident but not in place, since compaction and migration may still move mlocked
 * pages; it is charged in VmLck and by {@link MemlockAccount}. {@link SlotCharge#pinKind()} and
 * {@link #pinKind} say which each slot got.
 *
 * <h2>Locking, step by step ({@link #lockMemslot})</h2>
 * <ol>
 * <li>EINVAL for an address space or id without a slot, or a guest_memfd slot (its memory is not the hva);
 *     EBUSY for a slot already locked; EPERM for READ_WRITE on a READONLY slot or on a slot that logs dirty
 *     pages ("KVM: arm64: Add lock/unlock memslot user API", RFC v5 02/38: {@code KVM_ARM_LOCK_MEM_WRITE} with
 *     {@code KVM_MEM_READONLY} or a {@code dirty_bitmap}); EFAULT when part of the hva range is not mapped or
 *     is VM_PFNMAP/VM_IO (no struct pages to pin: GUP's {@code check_vma_flags}).</li>
 * <li>{@code try_rlimit_memlock}: without CAP_IPC_LOCK, {@code npages + locked_vm > RLIMIT_MEMLOCK} is ENOMEM,
 *     with nothing changed. For a long-term pin this check is the kernel's own, made when the buffers are
 *     registered (step 4): its ENOMEM comes back as {@link KvmException} ENOMEM naming the call.</li>
 * <li>The notifier's sequence is taken; then every page is faulted in with MADV_POPULATE_WRITE or
 *     MADV_POPULATE_READ, a few MiB per call, and an invalidation overlapping the slot seen between calls
 *     ends the lock early with EAGAIN. Write faults are used for READ_WRITE, and also for READ on private
 *     writable memory: the kernel's own mlock does the same ({@code populate_vma_page_range} breaks COW), and
 *     a read fault there would map the shared zero page, whose pfn the guest's first write would silently
 *     replace. READ on shared or read-only memory faults for read.</li>
 * <li>Pinning: the long-term pin registers the range (buffers of at most 1 GiB, tables of at most 16384); or
 *     mlock of the parts of the range no other mlocked slot holds (see {@link HvaLockRefs}) and that the
 *     application had not locked itself (those stay the application's; hugetlb VMAs are skipped by mlock).
 *     The kernel counts long-term pins itself, so aliased slots each hold their own.</li>
 * <li>One batched pagemap read records the pfns; every page must be present.</li>
 * <li>{@code account_locked_vm}: limit, capability, VmLck and VmPin are read again; over the limit is ENOMEM.</li>
 * <li>Under the publication monitor: an invalidation overlapping the slot since the sequence was taken (the
 *     sequence moved and the listener saw an overlapping range, or one overlapping is still in flight), or a
 *     change of the slot, is EAGAIN; otherwise the slot is published as locked.</li>
 * </ol>
 * Any failure after step 2 rolls back completely: what this lock pinned is unregistered and what it mlocked is
 * munlocked (VmPin and VmLck return to where they were), nothing is charged, the slot is not locked. Pages
 * faulted in stay resident (not locked).
 *
 * <h2>While locked</h2>
 * <ul>
 * <li>DELETE, MOVE and FLAGS_ONLY changes of the slot are vetoed with EBUSY ("KVM: arm64: Deny changes to
 *     locked memslots", RFC v5 09/38), except one: a FLAGS_ONLY change after which a slot locked for READ (not
 *     for write) logs dirty pages. Its entries are then write-protected again, as enabling dirty logging
 *     does, and each relaxes on the guest's next write.</li>
 * <li>The slot maps only at 4K ({@link #isLocked}, for {@code FollowPfn}'s max mapping level).</li>
 * <li>A READ lock's entries are read-only until {@link #relaxWrite} (a write fault) makes one writable, as
 *     dirty logging does.</li>
 * <li>An MMU-notifier invalidation overlapping a locked slot (munmap, mremap, a hole punch of the backing
 *     file: neither mlock nor a pin stops these) zaps the overlapping entries as KVM zaps SPTEs: their pfns are
 *     no longer reported ({@link Stage2Mapping#invalidated()}, {@link #lockedPfn} answers PFN_NONE) and
 *     {@link #invalidatedPages} counts them. Nothing re-pins them (a listener may not make syscalls): the slot
 *     stays locked and charged; unlock and lock again to re-establish it.</li>
 * </ul>
 *
 * <p>Unlocking unpins (unregisters the buffers) or munlocks what no other locked slot holds, and uncharges.
 * What the RFC keeps on unlock: the stage-2 mapping ("The IPA range is not unmapped from stage 2", the API
 * text of "KVM: arm64: Add lock/unlock memslot user API"; only pending cache maintenance makes a later patch
 * of the series unmap it); the pages are merely unpinned, and from then on the kernel's MMU notifier keeps
 * stage 2 coherent as for any unlocked slot. That works in the kernel because migration and THP collapse call
 * the notifier too; no userspace notifier sees them, so a pfn kept here after the unpin could go stale
 * silently. The lock's record of the pfns therefore goes with the lock ({@link #lockedPfn} answers PFN_NONE
 * afterwards, the slot maps at every level again), and the guest's mapping is what {@code FollowPfn} faults in
 * under the notifier's retry check. Nor does the RFC's {@code set_page_dirty_lock} on unpin have a counterpart:
 * pins are taken only on memory whose pages record their own dirtiness (anonymous, shmem, hugetlb; GUP refuses
 * a writable long-term pin of a regular file that needs dirty tracking, which is then mlocked). Lock
 * and unlock serialize on one operation lock (KVM's {@code slots_lock}); the lookups used by the fault path
 * ({@link #isLocked}, {@link #lockedPfn}, {@link #relaxWrite}) take no lock and allocate nothing.
 */
public final class MemslotLock implements SlotLocks, WriteFaultHook, AutoCloseable {

    /** Bytes faulted in per madvise call: big enough to batch, small enough to notice an invalidation soon. */
    static final long POPULATE_CHUNK = 32L << 20;

    /** One locked slot. Immutable except the entry bits. */
    private static final class Locked {
        /** The slot; replaced by the committed slot when dirty logging is turned on for a READ lock. */
        volatile Memslot slot;
        final LockMode mode;
        final PinKind kind;
        final long[] pfns;
        final AtomicLongArray writable;
        final AtomicLongArray invalid;
        final List<HvaRange> held;        // MLOCK: hva ranges this slot holds in the mlock pinning
        final long uncounted;             // MLOCK: charged pages VmLck does not show
        final LongTermPinning.Held pins;  // LONGTERM_PIN: the registered rings

        Locked(Memslot slot, LockMode mode, PinKind kind, long[] pfns, List<HvaRange> held, long uncounted,
               LongTermPinning.Held pins) {
            this.slot = slot;
            this.mode = mode;
            this.kind = kind;
            this.pins = pins;
            this.pfns = pfns;
            int words = (int) ((slot.npages() + 63) >>> 6);
            this.writable = new AtomicLongArray(words);
            this.invalid = new AtomicLongArray(words);
            if (mode.writable()) {
                for (int w = 0; w < words; w++) writable.set(w, -1L);
            }
            this.held = held;
            this.uncounted = uncounted;
        }

        static boolean get(AtomicLongArray bits, long i) {
            return (bits.get((int) (i >>> 6)) & (1L << i)) != 0;
        }

        static void set(AtomicLongArray bits, long i) {
            int w = (int) (i >>> 6);
            long old;
            do {
                old = bits.get(w);
            } while (!bits.compareAndSet(w, old, old | (1L << i))); // a CAS loop: no capturing lambda on the fault path
        }

        static void clear(AtomicLongArray bits, long i) {
            int w = (int) (i >>> 6);
            long old;
            do {
                old = bits.get(w);
            } while ((old & (1L << i)) != 0 && !bits.compareAndSet(w, old, old & ~(1L << i)));
        }

        BitSet toBitSet(AtomicLongArray bits) {
            long[] w = new long[bits.length()];
            for (int i = 0; i < w.length; i++) w[i] = bits.get(i);
            BitSet b = BitSet.valueOf(w);
            if (b.length() > slot.npages()) b.clear((int) slot.npages(), b.length());
            return b;
        }
    }

    /** A lock in progress: what the listener and the observer tell it. */
    private static final class Pending {
        final Memslot slot;
        long seq;                         // the notifier's sequence when the lock began
        volatile boolean invalidated;
        volatile boolean slotChanged;

        Pending(Memslot slot) {
            this.slot = slot;
        }
    }

    private final Memslots memslots;
    private final MmuNotifier notifier;
    private final PageGeometry geometry;
    private final MemlockAccount account;
    private final ReentrantLock opLock = new ReentrantLock(); // slots_lock
    private final Pagemap pagemap;
    /** The table of a closed lock: every query then throws (the check is the table read queries make anyway). */
    private static final Locked[] CLOSED = new Locked[0];
    private volatile Locked[] table = new Locked[0];            // replaced whole, under "this"; CLOSED once closed
    private volatile Pending pending;                           // written under opLock
    private final MlockPinning pinning;                         // guarded by opLock
    private final LongTermPinning longTerm;                     // guarded by opLock
    private volatile long invalidatedPages;
    private volatile boolean closed;
    private final MemslotObserver observer = new MemslotObserver() {
        @Override
        public void beforeCommit(MemslotChange change) {
            vetoLocked(change);
        }

        @Override
        public void committed(MemslotChange change) {
            loggingTurnedOn(change);
        }
    };
    private final InvalidationListener listener = this::invalidateRangeStart;

    /** Test hook: runs after the pages are pinned and before the final accounting check. */
    volatile Runnable afterPin;

    /**
     * The lock of the slots behind {@code notifier} (and its {@link MmuNotifier#memslots()}). {@code dirtyLog} is
     * no longer told anything: the RFC's unlock marks the host pages of a write lock dirty
     * ({@code set_page_dirty_lock}), which the kernel's own page tables already record here, and a slot that
     * logs dirty pages can be neither write-locked (EPERM) nor made to log while write-locked (EBUSY), so no
     * unlock has dirty pages to report. Registers a memslot observer (the veto) and an invalidation listener;
     * {@link #close()} unlocks all and removes them.
     */
    public MemslotLock(MmuNotifier notifier, DirtyLog dirtyLog) {
        java.util.Objects.requireNonNull(dirtyLog, "dirtyLog (DirtyLog.NONE for none)");
        this.notifier = notifier;
        this.memslots = notifier.memslots();
        this.geometry = memslots.geometry();
        this.account = new MemlockAccount(geometry.pageSize());
        this.pinning = new MlockPinning(account);
        this.longTerm = new LongTermPinning(account);
        this.pagemap = Pagemap.openSelf();
        memslots.addObserver(observer);
        notifier.addListener(listener);
    }

    public MemlockAccount account() {
        return account;
    }

    // ------------------------------------------------------------------ lock / unlock

    /** {@link #lockMemslot(int, int, LockMode)} in address space 0. */
    public SlotCharge lockMemslot(int slotId, LockMode mode) {
        return lockMemslot(0, slotId, mode);
    }

    /**
     * Locks slot {@code slotId} of {@code addressSpace} (see the class comment for the steps and errors).
     *
     * @return what the slot now charges, and how it is pinned
     * @throws KvmException EINVAL, EBUSY, EPERM, EFAULT, ENOMEM (the limit, or a failed pin: the kernel's errno
     *                      is the cause) or EAGAIN (invalidation), with nothing left locked
     * @throws SyscallException when the kernel refuses to fault or mlock the pages (also rolled back)
     */
    public SlotCharge lockMemslot(int addressSpace, int slotId, LockMode mode) {
        if (mode == null) throw new IllegalArgumentException("mode");
        String op = "lockMemslot(as " + addressSpace + " slot " + slotId + ", " + mode + ")";
        opLock.lock();
        try {
            checkOpen("lockMemslot()");
            Memslot slot = slotOrEinval(op, addressSpace, slotId);
            if (find(table, addressSpace, slotId) != null) throw new KvmException(Errno.EBUSY, op, "the slot is already locked");
            if (slot.guestMemfd()) {
                throw new KvmException(Errno.EINVAL, op, "a guest_memfd slot's memory is not its hva range");
            }
            if (mode.writable() && slot.readOnly()) {
                throw new KvmException(Errno.EPERM, op, "a READONLY slot cannot be locked for write");
            }
            if (mode.writable() && slot.logsDirty()) {
                throw new KvmException(Errno.EPERM, op, "a slot that logs dirty pages cannot be locked for write");
            }
            long hva = slot.userspaceAddr();
            long end = hva + (slot.npages() << geometry.shift());
            List<Vma> vmas = coveringVmas(op, hva, end);
            boolean writable = pinnableWritable(vmas);
            if (mode.writable() && !writable) {
                // pin_user_pages(FOLL_WRITE) fails on a mapping without write permission, and the RFC reports
                // any failed pin as ENOMEM.
                throw new KvmException(Errno.ENOMEM, op, "the hva range is not mapped writable: a FOLL_WRITE pin"
                        + " of it fails (the RFC reports a failed pin as ENOMEM)");
            }
            if (writable) {
                try {
                    return lockPinned(op, slot, vmas, hva, end, mode);
                } catch (KvmException e) {
                    if (!(e.getCause() instanceof SyscallException k) || !mlockInstead(k, vmas)) throw e;
                }
            }
            return lockMlocked(op, slot, vmas, hva, end, mode);
        } finally {
            opLock.unlock();
        }
    }

    /** Whether every VMA of the slot maps its pages writable: then they can be pinned with FOLL_WRITE. */
    private static boolean pinnableWritable(List<Vma> vmas) {
        for (Vma v : vmas) {
            if (v.perms().length() < 2 || v.perms().charAt(1) != 'w') return false;
        }
        return true;
    }

    /**
     * Whether a refused long-term pin is one mlock can stand in for: GUP refuses a writable long-term pin of a
     * file that needs dirty tracking (a regular file's shared mapping: {@code writable_file_mapping_allowed}),
     * and a kernel without io_uring, or with {@code kernel.io_uring_disabled} set, refuses the ring itself
     * (ENOSYS, EPERM). The slot then reports {@link PinKind#MLOCK}.
     */
    private static boolean mlockInstead(SyscallException k, List<Vma> vmas) {
        if (k.call().startsWith("io_uring_setup")) return k.is(Errno.ENOSYS) || k.is(Errno.EPERM);
        return (k.is(Errno.EFAULT) || k.is(Errno.EOPNOTSUPP)) && anyFileBacked(vmas);
    }

    private static boolean anyFileBacked(List<Vma> vmas) {
        for (Vma v : vmas) if (v.inode() != 0 && !v.hugetlb() && !v.name().startsWith("/memfd:")) return true;
        return false;
    }

    /** The lock steps with a long-term pin ({@link LongTermPinning}): the kernel's charge, VmPin. */
    private SlotCharge lockPinned(String op, Memslot slot, List<Vma> vmas, long hva, long end, LockMode mode) {
        long npages = slot.npages();
        Pending p = new Pending(slot);
        try (LongTermPinning.Pin pin = longTerm.begin(op, hva, end, npages)) {
            long[] pfns = pinAndRecord(op, p, vmas, hva, end, mode, pin::pin, pin::checkCharge);
            Locked l = new Locked(slot, mode, PinKind.LONGTERM_PIN, pfns, List.of(), 0, pin.held());
            publish(op, p, l);
            pin.commit();
            return new SlotCharge(slot.addressSpace(), slot.id(), mode, PinKind.LONGTERM_PIN, npages, 0);
        } finally {
            clearPending(p);
        }
    }

    /** The lock steps with mlock ({@link MlockPinning}): try_rlimit_memlock first, VmLck. */
    private SlotCharge lockMlocked(String op, Memslot slot, List<Vma> vmas, long hva, long end, LockMode mode) {
        long npages = slot.npages();
        Pending p = new Pending(slot);
        try (MlockPinning.Pin pin = pinning.begin(op, holdOf(vmas, hva, end), npages)) {
            long[] pfns = pinAndRecord(op, p, vmas, hva, end, mode, pin::mlock, pin::checkCharge);
            Locked l = new Locked(slot, mode, PinKind.MLOCK, pfns, pin.hold(), pin.uncountedPages(), null);
            publish(op, p, l);
            pin.commit();
            return new SlotCharge(slot.addressSpace(), slot.id(), mode, PinKind.MLOCK, npages, pin.uncountedPages());
        } finally {
            clearPending(p);
        }
    }

    /**
     * The steps both kinds share: the notifier's sequence, fault in, {@code take} the pages, record the pfns,
     * the test hook, {@code checkCharge}. Returns the pfns; any exception leaves the caller's pin to roll back.
     */
    private long[] pinAndRecord(String op, Pending p, List<Vma> vmas, long hva, long end, LockMode mode,
                                Runnable take, Runnable checkCharge) {
        pending = p;
        p.seq = notifier.sequence();
        if (overlapsInFlight(p.slot)) throw eagain(op, "an invalidation of the slot is in progress");
        populate(op, p, vmas, hva, end, mode);
        take.run();
        if (p.invalidated) throw eagain(op, "an invalidation overlapped the slot while it was pinned");
        long[] pfns = readPfns(op, p, hva, p.slot.npages());
        Runnable hook = afterPin;
        if (hook != null) hook.run();
        checkCharge.run();
        return pfns;
    }

    /** Publishes {@code l} unless an invalidation or a change of the slot intervened (then EAGAIN). */
    private void publish(String op, Pending p, Locked l) {
        Memslot slot = p.slot;
        synchronized (this) {
            // mmu_invalidate_retry: the sequence tells cheaply that nothing happened at all; when it
            // moved, only an invalidation that overlapped this slot makes the pfns stale.
            if (notifier.sequence() != p.seq || notifier.inProgress() != 0) {
                if (p.invalidated || overlapsInFlight(slot)) {
                    throw eagain(op, "an invalidation overlapped the slot while it was locked");
                }
            }
            if (p.invalidated) throw eagain(op, "an invalidation overlapped the slot while it was locked");
            if (p.slotChanged || memslots.current(slot.addressSpace()).byId(slot.id()) != slot) {
                throw eagain(op, "the slot changed while it was being locked");
            }
            Locked[] t = table;
            Locked[] n = java.util.Arrays.copyOf(t, t.length + 1);
            n[t.length] = l;
            table = n;
            pending = null;
        }
    }

    /** Published or failed: no lock is in progress any more (the pin's close rolls a failure back). */
    private void clearPending(Pending p) {
        synchronized (this) {
            if (pending == p) pending = null;
        }
    }

    /**
     * What a lock of {@code [hva, end)} will hold: every VMA's part but hugetlb ones (mlock skips them) and
     * those the application locked itself (its lock stays its own; parts of them held by our other slots are
     * shared with those). Pages outside the hold are charged as uncounted.
     */
    private List<HvaRange> holdOf(List<Vma> vmas, long hva, long end) {
        List<HvaRange> hold = new ArrayList<>();
        for (Vma v : vmas) {
            if (v.hugetlb()) continue;
            HvaRange part = new HvaRange(hva, end).clip(v.start(), v.end());
            if (part == null) continue;
            if (v.has(VmFlag.LOCKED)) {
                for (HvaRange r : pinning.heldParts(part)) HvaLockRefs.append(hold, r);
            } else {
                HvaLockRefs.append(hold, part);
            }
        }
        return hold;
    }

    /** {@link #unlockMemslot(int, int)} in address space 0. */
    public void unlockMemslot(int slotId) {
        unlockMemslot(0, slotId);
    }

    /**
     * Unlocks slot {@code slotId}: unpins it (unregisters its buffers: VmPin drops at once) or munlocks what no
     * other locked slot holds, and uncharges it. EINVAL when the slot is not locked or the id is invalid.
     */
    public void unlockMemslot(int addressSpace, int slotId) {
        String op = "unlockMemslot(as " + addressSpace + " slot " + slotId + ")";
        opLock.lock();
        try {
            checkOpen("unlockMemslot()");
            if (addressSpace < 0 || addressSpace >= memslots.addressSpaces() || slotId < 0
                    || slotId >= memslots.config().maxSlots()) {
                throw new KvmException(Errno.EINVAL, op, "invalid address space or slot id");
            }
            Locked l = find(table, addressSpace, slotId);
            if (l == null) throw new KvmException(Errno.EINVAL, op, "the slot is not locked");
            unlock(l);
        } finally {
            opLock.unlock();
        }
    }

    /** Unlocks every locked slot; returns how many there were. */
    public int unlockAll() {
        opLock.lock();
        try {
            Locked[] t = live("unlockAll()");
            RuntimeException first = null;
            for (Locked l : t) {
                try {
                    unlock(l);
                } catch (RuntimeException e) {
                    if (first == null) first = e;
                    else first.addSuppressed(e);
                }
            }
            if (first != null) throw first;
            return t.length;
        } finally {
            opLock.unlock();
        }
    }

    private void unlock(Locked l) {
        synchronized (this) {
            Locked[] t = table;
            Locked[] n = new Locked[t.length - 1];
            int j = 0;
            for (Locked x : t) if (x != l) n[j++] = x;
            table = n;
        }
        if (l.kind == PinKind.LONGTERM_PIN) longTerm.release(l.pins);
        else pinning.release(l.held, l.uncounted);
    }

    // ------------------------------------------------------------------ queries (fault path: no lock, no allocation)

    /** Whether slot {@code slotId} of address space 0 is locked. */
    public boolean isLocked(int slotId) {
        return isLocked(0, slotId);
    }

    /** Whether slot {@code slotId} of {@code addressSpace} is locked: then it maps only at 4K. */
    public boolean isLocked(int addressSpace, int slotId) {
        return find(live("isLocked()"), addressSpace, slotId) != null;
    }

    /** {@link SlotLocks}: whether {@code slot} (by address space and id) is locked, so it maps base pages only. */
    @Override
    public boolean isLocked(Memslot slot) {
        return isLocked(slot.addressSpace(), slot.id());
    }

    /** Whether the slot containing {@code gfn} in {@code addressSpace} is locked. */
    public boolean isGfnLocked(int addressSpace, long gfn) {
        return findGfn(live("isGfnLocked()"), addressSpace, gfn) != null;
    }

    /** Whether any slot is locked. */
    public boolean anyLocked() {
        return live("anyLocked()").length != 0;
    }

    /**
     * The recorded pfn of {@code gfn}: a pfn, {@link PagemapEntry#PFN_HIDDEN}, or {@link PagemapEntry#PFN_NONE}
     * when the gfn is in no locked slot or its entry was zapped by an invalidation.
     */
    public long lockedPfn(int addressSpace, long gfn) {
        Locked l = findGfn(live("lockedPfn()"), addressSpace, gfn);
        if (l == null) return PagemapEntry.PFN_NONE;
        long i = gfn - l.slot.baseGfn();
        return Locked.get(l.invalid, i) ? PagemapEntry.PFN_NONE : l.pfns[(int) i];
    }

    /** Whether the recorded entry of {@code gfn} is writable (false outside locked slots). */
    public boolean stage2Writable(int addressSpace, long gfn) {
        Locked l = findGfn(live("stage2Writable()"), addressSpace, gfn);
        return l != null && Locked.get(l.writable, gfn - l.slot.baseGfn());
    }

    /**
     * A write fault on a locked slot: relaxes a READ lock's entry of {@code gfn} to writable (the patch's review thread: "subsequent
     * stage 2 data aborts will relax the permissions if needed"). True when the entry is writable afterwards;
     * false when the gfn is in no locked slot, its slot is READONLY, or its entry was zapped.
     */
    public boolean relaxWrite(int addressSpace, long gfn) {
        Locked l = findGfn(live("relaxWrite()"), addressSpace, gfn);
        if (l == null || l.slot.readOnly()) return false;
        long i = gfn - l.slot.baseGfn();
        if (Locked.get(l.invalid, i)) return false;
        if (!Locked.get(l.writable, i)) Locked.set(l.writable, i);
        return true;
    }

    /** {@link WriteFaultHook}: a successful write fault of follow_pfn relaxes the entry ({@link #relaxWrite}). */
    @Override
    public void writeFault(Memslot slot, long gfn) {
        relaxWrite(slot.addressSpace(), gfn);
    }

    /** A copy of the stage-2 mapping of a locked slot; EINVAL when it is not locked. */
    public Stage2Mapping stage2(int addressSpace, int slotId) {
        Locked l = find(live("stage2()"), addressSpace, slotId);
        if (l == null) {
            throw new KvmException(Errno.EINVAL, "stage2(as " + addressSpace + " slot " + slotId + ")", "the slot is not locked");
        }
        return new Stage2Mapping(l.slot, l.mode, l.pfns, l.toBitSet(l.writable), l.toBitSet(l.invalid));
    }

    /** {@link #stage2(int, int)} in address space 0. */
    public Stage2Mapping stage2(int slotId) {
        return stage2(0, slotId);
    }

    /** How a locked slot's pages are held, or null when it is not locked. */
    public PinKind pinKind(int addressSpace, int slotId) {
        Locked l = find(live("pinKind()"), addressSpace, slotId);
        return l == null ? null : l.kind;
    }

    /** The lock mode of a locked slot, or null. */
    public LockMode mode(int addressSpace, int slotId) {
        Locked l = find(live("mode()"), addressSpace, slotId);
        return l == null ? null : l.mode;
    }

    /** Pages of locked slots zapped by invalidations since this lock was created. */
    public long invalidatedPages() {
        return invalidatedPages;
    }

    /** The slot a lock is being taken on right now, or null. */
    public Memslot lockInProgress() {
        Pending p = pending;
        return p == null ? null : p.slot;
    }

    /** The budget now: per-slot charges, totals, the kernel's VmLck and limit, and the headroom. */
    public MemlockStatus status() {
        Locked[] t = live("status()");
        List<SlotCharge> slots = new ArrayList<>(t.length);
        long total = 0;
        for (Locked l : t) {
            slots.add(new SlotCharge(l.slot.addressSpace(), l.slot.id(), l.mode, l.kind, l.slot.npages(), l.uncounted));
            total += l.slot.npages();
        }
        io.guestmem.procfs.ProcStatus ps = io.guestmem.procfs.ProcStatus.self();
        long vmLck = ps.vmLck(), vmPin = ps.vmPin();
        long uncounted = account.uncountedPages();
        long lockedVm = vmLck / geometry.pageSize() + vmPin / geometry.pageSize() + uncounted;
        long limit = account.limitBytes();
        boolean cap = account.capIpcLock();
        long headroom = cap || limit < 0 ? Long.MAX_VALUE : Math.max(0, limit / geometry.pageSize() - lockedVm);
        return new MemlockStatus(slots, total, vmLck, vmPin, uncounted, lockedVm, limit, cap, headroom);
    }

    /**
     * Runs {@code action} while no slot is locked and none can be locked (the operation lock is held); when
     * slots are locked, throws EINVAL from {@code op} naming them and {@code why}. For {@link VmCapabilityGate}.
     */
    void whileNoneLocked(String op, String why, Runnable action) {
        opLock.lock();
        try {
            Locked[] t = live(op);
            if (t.length != 0) {
                StringBuilder ids = new StringBuilder();
                for (Locked l : t) {
                    if (!ids.isEmpty()) ids.append(", ");
                    ids.append(l.slot.addressSpace() == 0 ? "" : "as " + l.slot.addressSpace() + " ").append(l.slot.id());
                }
                throw new KvmException(Errno.EINVAL, op, t.length + " memslot(s) locked (slot " + ids + "): " + why);
            }
            action.run();
        } finally {
            opLock.unlock();
        }
    }

    /**
     * Unlocks every slot and detaches from the memslots and the notifier. Idempotent. Afterwards every call but
     * {@link #close()}, {@link #account()}, {@link #invalidatedPages()} and {@link #lockInProgress()} throws
     * IllegalStateException naming the call.
     */
    @Override
    public void close() {
        opLock.lock();
        try {
            if (closed) return;
            try {
                unlockAll();
            } finally {
                closed = true;
                synchronized (this) {
                    table = CLOSED;
                }
                memslots.removeObserver(observer);
                notifier.removeListener(listener);
                pagemap.close();
            }
        } finally {
            opLock.unlock();
        }
    }

    // ------------------------------------------------------------------ internals

    private void checkOpen(String call) {
        if (closed) throw UseAfterClose.of("MemslotLock", call);
    }

    /** The table, or IllegalStateException naming {@code call} once closed. */
    private Locked[] live(String call) {
        Locked[] t = table;
        if (t == CLOSED) throw UseAfterClose.of("MemslotLock", call);
        return t;
    }

    private static Locked find(Locked[] table, int as, int id) {
        for (Locked l : table) {
            if (l.slot.id() == id && l.slot.addressSpace() == as) return l;
        }
        return null;
    }

    private static Locked findGfn(Locked[] table, int as, long gfn) {
        for (Locked l : table) {
            if (l.slot.addressSpace() == as && l.slot.containsGfn(gfn)) return l;
        }
        return null;
    }

    private Memslot slotOrEinval(String op, int as, int id) {
        if (as < 0 || as >= memslots.addressSpaces()) throw new KvmException(Errno.EINVAL, op, "invalid address space");
        if (id < 0 || id >= memslots.config().maxSlots()) throw new KvmException(Errno.EINVAL, op, "invalid slot id");
        Memslot slot = memslots.current(as).byId(id);
        if (slot == null) throw new KvmException(Errno.EINVAL, op, "no such slot");
        return slot;
    }

    /** The VMAs covering [start, end) without a hole; EFAULT for holes and VM_PFNMAP/VM_IO. */
    private static List<Vma> coveringVmas(String op, long start, long end) {
        List<Vma> vmas = Smaps.overlapping(0, start, end);
        long pos = start;
        for (Vma v : vmas) {
            if (v.end() <= start || v.start() >= end) continue;
            if (v.start() > pos) break;
            if (v.pfnMap() || v.has(VmFlag.IO)) {
                throw new KvmException(Errno.EFAULT, op, "hva " + Fmt.hex(v.start()) + " is VM_PFNMAP/VM_IO: no pages to pin");
            }
            pos = Math.max(pos, v.end());
        }
        if (pos < end) throw new KvmException(Errno.EFAULT, op, "hva " + Fmt.hex(pos) + " of the slot is not mapped");
        return vmas;
    }

    /**
     * Faults every page in, {@link #POPULATE_CHUNK} per madvise, stopping with EAGAIN as soon as an invalidation
     * of the slot is seen.
     */
    private void populate(String op, Pending p, List<Vma> vmas, long start, long end, LockMode mode) {
        for (Vma v : vmas) {
            long s = Math.max(start, v.start()), e = Math.min(end, v.end());
            if (s >= e) continue;
            boolean privateWritable = v.perms().length() >= 4 && v.perms().charAt(1) == 'w' && v.perms().charAt(3) == 'p';
            int advice = mode.writable() || privateWritable ? Mman.MADV_POPULATE_WRITE : Mman.MADV_POPULATE_READ;
            long chunk = Math.max(POPULATE_CHUNK, v.kernelPageSize());
            for (long a = s; a < e; a += chunk) {
                if (p.invalidated) throw eagain(op, "an invalidation overlapped the slot while it was faulted in");
                long len = Math.min(chunk, e - a);
                int r = Mman.madviseRaw(a, len, advice);
                if (r < 0) {
                    if (p.invalidated) throw eagain(op, "an invalidation overlapped the slot while it was faulted in");
                    throw new SyscallException(-r, "madvise(" + Fmt.hex(a) + ", " + Fmt.size(len) + ", "
                            + Mman.adviceName(advice) + ")", "faulting in " + op);
                }
            }
        }
    }

    /** One batched pagemap read of the whole slot; every page must be present. */
    private long[] readPfns(String op, Pending p, long hva, long npages) {
        if (npages > Integer.MAX_VALUE - 8) throw new KvmException(Errno.ENOMEM, op, "slot too large to record");
        long[] raw = new long[(int) npages];
        pagemap.read(hva, raw, 0, (int) npages);
        boolean visible = pagemap.pfnVisible();
        for (int i = 0; i < raw.length; i++) {
            long pfn = PagemapEntry.pfn(raw[i], visible);
            if (pfn == PagemapEntry.PFN_NONE) {
                if (p.invalidated) throw eagain(op, "an invalidation overlapped the slot while it was pinned");
                throw new KvmException(Errno.EFAULT, op, "page " + i + " (hva " + Fmt.hex(hva + ((long) i << geometry.shift()))
                        + ") is not present after being faulted in and locked");
            }
            raw[i] = pfn;
        }
        return raw;
    }

    private boolean overlapsInFlight(Memslot slot) {
        if (notifier.inProgress() == 0) return false;
        long s = notifier.rangeStart(), e = notifier.rangeEnd();
        if (s == MmuNotifier.INVALID_GFN) return true;
        return s < slot.endGfn() && slot.baseGfn() < e;
    }

    private static KvmException eagain(String op, String why) {
        return new KvmException(Errno.EAGAIN, op, why + "; nothing is left locked, try again");
    }

    /**
     * The memslot observer ("KVM: arm64: Deny changes to locked memslots"): a locked slot may not be deleted,
     * moved or have its flags changed (EBUSY), except one change: a FLAGS_ONLY change after which a slot
     * locked for READ (not for write) logs dirty pages.
     */
    private void vetoLocked(MemslotChange change) {
        Memslot old = change.old();
        if (old == null) return;
        synchronized (this) {
            Locked l = find(table, old.addressSpace(), old.id());
            if (l != null && !loggingOnReadLock(change, l)) {
                throw new KvmException(Errno.EBUSY, "setMemslot(as " + old.addressSpace() + " slot " + old.id() + ") "
                        + change.kind(), "the slot is locked (" + l.mode + "): unlock it before "
                        + (change.kind() == MemslotChange.Kind.DELETE ? "deleting" : change.kind() == MemslotChange.Kind.MOVE
                        ? "moving" : "changing the flags of") + " it");
            }
            Pending p = pending;
            if (p != null && p.slot.addressSpace() == old.addressSpace() && p.slot.id() == old.id()) {
                p.slotChanged = true; // the lock in progress will end with EAGAIN
            }
        }
    }

    private static boolean loggingOnReadLock(MemslotChange change, Locked l) {
        Memslot u = change.updated();
        return change.kind() == MemslotChange.Kind.FLAGS_ONLY && u != null && u.logsDirty() && !u.readOnly()
                && !l.mode.writable();
    }

    /**
     * A READ-locked slot now logs dirty pages: the lock follows the committed slot. Its entries were
     * write-protected by the invalidation the change made ({@link #invalidateRangeStart}), so the guest's next
     * write to each page faults, is logged and relaxes the entry.
     */
    private void loggingTurnedOn(MemslotChange change) {
        Memslot old = change.old();
        if (old == null || change.kind() != MemslotChange.Kind.FLAGS_ONLY) return;
        synchronized (this) {
            Locked l = find(table, old.addressSpace(), old.id());
            if (l != null && loggingOnReadLock(change, l)) l.slot = change.updated();
        }
    }

    /** The invalidation listener: zaps locked entries, tells a lock in progress. Quick, no syscalls. */
    private void invalidateRangeStart(Invalidation inv) {
        Pending p = pending;
        MemslotChange mc = inv.memslotChange();
        // Dirty logging starting on a slot (only a READ-locked one gets this far): KVM write-protects its
        // entries (kvm_mmu_wp_memory_region) rather than dropping them; the pins stay, so do the pfns.
        boolean startsLogging = mc != null && mc.kind() == MemslotChange.Kind.FLAGS_ONLY && mc.updated().logsDirty();
        for (Invalidation.GfnRange r : inv.ranges()) {
            if (p != null && r.addressSpace() == p.slot.addressSpace() && r.start() < p.slot.endGfn()
                    && p.slot.baseGfn() < r.end()) {
                p.invalidated = true;
            }
            for (Locked l : table) {
                if (l.slot.addressSpace() != r.addressSpace()) continue;
                long s = Math.max(r.start(), l.slot.baseGfn()), e = Math.min(r.end(), l.slot.endGfn());
                if (startsLogging && !l.mode.writable()) {
                    for (long g = s; g < e; g++) Locked.clear(l.writable, g - l.slot.baseGfn());
                    continue;
                }
                long zapped = 0;
                for (long g = s; g < e; g++) {
                    long i = g - l.slot.baseGfn();
                    if (!Locked.get(l.invalid, i)) {
                        Locked.set(l.invalid, i);
                        zapped++;
                    }
                }
                if (zapped != 0) invalidatedPages += zapped;
            }
        }
    }
}
