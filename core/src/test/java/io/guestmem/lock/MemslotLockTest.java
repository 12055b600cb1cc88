package io.guestmem.lock;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.host.HugePageSize;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.Invalidation;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.procfs.Smaps;
import io.guestmem.sys.Capabilities;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.Rlimit;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Memslot locking on real memory, checked against the kernel's VmPin (long-term pins: slots mapped writable),
 * VmLck (mlock: READ locks of read-only mappings), pagemap and smaps.
 */
class MemslotLockTest {
    static final long MiB = 1L << 20;
    static final long PS = Posix.PAGE_SIZE;

    Memslots memslots;
    MmuNotifier notifier;
    MemslotLock lock;
    /** What the lock's dirty log was told: {slot id, first gfn, pages} per call. */
    final List<long[]> dirty = new java.util.concurrent.CopyOnWriteArrayList<>();
    final List<HostRegion> regions = new ArrayList<>();
    long baseline;
    long pinBaseline;

    @BeforeEach
    void setUp() {
        memslots = new Memslots();
        notifier = new MmuNotifier(memslots);
        lock = new MemslotLock(notifier, (slot, gfn, n) -> dirty.add(new long[] {slot.id(), gfn, n}));
        baseline = vmLck();
        pinBaseline = vmPin();
    }

    @AfterEach
    void tearDown() {
        lock.close();
        for (HostRegion r : regions) r.close();
        assertEquals(baseline, vmLck(), "VmLck back at its baseline after the test");
        assertEquals(pinBaseline, vmPin(), "VmPin back at its baseline after the test");
    }

    static long vmLck() {
        return ProcStatus.self().vmLck();
    }

    static long vmPin() {
        return ProcStatus.self().vmPin();
    }

    /** What a long-term pin of {@code bytes} adds to VmPin on this kernel (0 where it does not show them). */
    static long shown(long bytes) {
        return VmPinAccounting.shownBytes(bytes);
    }

    /** Anonymous memory written (so no page is the zero page), then mapped read-only: only mlock can hold it. */
    HostRegion readOnlyAnon(long size) {
        HostRegion r = anon(size);
        for (long off = 0; off < size; off += PS) r.segment().set(java.lang.foreign.ValueLayout.JAVA_LONG, off, off + 1);
        Mman.mprotect(r.address(), size, Mman.PROT_READ);
        return r;
    }

    HostRegion anon(long size) {
        HostRegion r = HostRegion.anonymous(size).create();
        regions.add(r);
        return r;
    }

    Memslot slot(int id, long gpa, HostRegion r) {
        return slot(id, 0, gpa, r.size(), r.address());
    }

    Memslot slot(int id, int flags, long gpa, long size, long hva) {
        memslots.setMemslot(0, id, flags, gpa, size, hva);
        return memslots.current().byId(id);
    }

    static long[] pagemapPfns(long hva, long npages) {
        try (Pagemap pm = Pagemap.openSelf()) {
            long[] raw = pm.read(hva, (int) npages);
            for (int i = 0; i < raw.length; i++) raw[i] = pm.pfnOf(raw[i]);
            return raw;
        }
    }

    static KvmException kvmError(Errno errno, Runnable r) {
        KvmException e = assertThrows(KvmException.class, r::run);
        assertEquals(errno, e.errno(), e.getMessage());
        return e;
    }

    @Test
    void writeLockPinsLongTermRecordsPagemapPfnsAndBypassesTheLimitWithCapIpcLock() {
        assertTrue(Capabilities.has(Capabilities.CAP_IPC_LOCK), "this test process is root with CAP_IPC_LOCK");
        long limit = Rlimit.getrlimit(Rlimit.RLIMIT_MEMLOCK).soft();
        long size = limit == Rlimit.RLIM_INFINITY ? 64 * MiB : limit + 8 * MiB; // more than the limit allows
        HostRegion r = anon(size);
        Memslot s = slot(1, 0x100000, r);

        SlotCharge c = lock.lockMemslot(1, LockMode.READ_WRITE);
        assertEquals(new SlotCharge(0, 1, LockMode.READ_WRITE, PinKind.LONGTERM_PIN, size / PS, 0), c);
        assertEquals(pinBaseline + shown(size), vmPin(), "VmPin grows by exactly the slot's size");
        assertEquals(baseline, vmLck(), "a long-term pin is not an mlock: VmLck unchanged");
        assertEquals(0, Smaps.vmaOf(r.address()).locked(), "smaps: nothing mlocked");
        assertEquals(PinKind.LONGTERM_PIN, lock.pinKind(0, 1));
        assertTrue(lock.isLocked(1));
        assertTrue(lock.isGfnLocked(0, s.baseGfn() + 5));

        Stage2Mapping m = lock.stage2(1);
        long[] now = pagemapPfns(r.address(), s.npages());
        assertArrayEquals(now, m.pfns(), "recorded pfns are pagemap's");
        for (long p : now) assertTrue(p > 0, "every page present with a visible pfn");
        assertEquals(s.npages(), new HashSet<>(boxed(now)).size(), "distinct pages (no zero page)");
        assertEquals(s.npages(), m.writable().cardinality(), "READ_WRITE: every entry writable");
        assertEquals(now[7], lock.lockedPfn(0, s.baseGfn() + 7));
        assertEquals(PagemapEntry.PFN_NONE, lock.lockedPfn(0, s.endGfn()));

        MemlockStatus st = lock.status();
        assertEquals(1, st.slots().size());
        assertEquals(size / PS, st.lockedPages());
        assertEquals(vmLck(), st.vmLckBytes());
        assertEquals(vmPin(), st.vmPinBytes());
        assertEquals(PinKind.LONGTERM_PIN, st.slots().get(0).pinKind());
        assertEquals(vmLck() / PS + vmPin() / PS, st.lockedVmPages(), "locked_vm: VmLck + VmPin, nothing uncounted");
        assertTrue(st.capIpcLock());
        assertEquals(Long.MAX_VALUE, st.headroomPages());

        lock.unlockMemslot(1);
        assertEquals(pinBaseline, vmPin(), "VmPin back at its baseline after unlock");
        assertFalse(lock.isLocked(1));
        assertEquals(null, lock.pinKind(0, 1));
        assertEquals(0, lock.status().lockedPages());
    }

    @Test
    void readLockIsReadOnlyUntilAWriteRelaxesAnEntry() {
        HostRegion r = anon(4 * MiB);
        Memslot s = slot(2, 0x200000, r);
        SlotCharge c = lock.lockMemslot(2, LockMode.READ);
        assertEquals(PinKind.LONGTERM_PIN, c.pinKind(), "writable memory is pinned long-term for a READ lock too");
        assertEquals(pinBaseline + shown(4 * MiB), vmPin());
        assertEquals(baseline, vmLck());
        Stage2Mapping m = lock.stage2(2);
        assertEquals(0, m.writable().cardinality(), "READ: every entry read-only");
        long[] now = pagemapPfns(r.address(), s.npages());
        assertArrayEquals(now, m.pfns());
        // Private writable memory is faulted for write (COW broken, as mlock does): no shared zero page.
        assertEquals(s.npages(), new HashSet<>(boxed(now)).size());
        try (KPageFlags kf = KPageFlags.open()) {
            assertFalse(kf.flags(now[0]).contains(KPageFlag.ZERO_PAGE));
        }
        long g = s.baseGfn() + 3;
        assertFalse(lock.stage2Writable(0, g));
        assertTrue(lock.relaxWrite(0, g));
        assertTrue(lock.stage2Writable(0, g));
        assertFalse(lock.stage2Writable(0, g + 1));
        // The guest's write lands on the pinned page: same pfn afterwards.
        r.segment().set(java.lang.foreign.ValueLayout.JAVA_BYTE, 3 * PS, (byte) 7);
        assertEquals(lock.lockedPfn(0, g), pagemapPfns(r.address() + 3 * PS, 1)[0]);
        assertEquals(1, lock.stage2(2).writable().cardinality());
        assertFalse(lock.relaxWrite(0, s.endGfn() + 100), "not in a locked slot");
        lock.unlockMemslot(2);
        assertEquals(pinBaseline, vmPin());
    }

    @Test
    void readLockOfReadOnlyMemoryIsMlocked() {
        HostRegion r = readOnlyAnon(4 * MiB);
        Memslot s = slot(2, 0x200000, r);
        // READ_WRITE of a read-only mapping: a FOLL_WRITE pin would fail, and the RFC's failed pin is ENOMEM.
        KvmException w = kvmError(Errno.ENOMEM, () -> lock.lockMemslot(2, LockMode.READ_WRITE));
        assertTrue(w.getMessage().contains("not mapped writable"), w.getMessage());
        assertFalse(lock.isLocked(2));
        assertEquals(pinBaseline, vmPin());
        assertEquals(baseline, vmLck());
        SlotCharge c = lock.lockMemslot(2, LockMode.READ);
        assertEquals(new SlotCharge(0, 2, LockMode.READ, PinKind.MLOCK, s.npages(), 0), c);
        assertEquals(baseline + 4 * MiB, vmLck(), "VmLck grows by exactly the slot's size");
        assertEquals(4 * MiB, Smaps.vmaOf(r.address()).locked(), "smaps: the whole VMA is locked");
        assertEquals(pinBaseline, vmPin(), "nothing pinned long-term: FOLL_WRITE cannot pin a read-only mapping");
        long[] now = pagemapPfns(r.address(), s.npages());
        assertArrayEquals(now, lock.stage2(2).pfns());
        assertEquals(s.npages(), new HashSet<>(boxed(now)).size(), "the written pages, not the zero page");
        assertEquals(PinKind.MLOCK, lock.status().slots().get(0).pinKind());
        lock.unlockMemslot(2);
        assertEquals(baseline, vmLck());
        assertEquals(0, Smaps.vmaOf(r.address()).locked());
    }

    @Test
    void aRegularFilesSharedMappingIsMlockedBecauseGupWillNotPinItLongTerm() throws Exception {
        // In the build directory, on the disk the sources are on (a tmpfs /tmp would be shmem, which pins).
        java.nio.file.Path dir = java.nio.file.Files.createDirectories(java.nio.file.Path.of("target"));
        java.nio.file.Path f = java.nio.file.Files.createTempFile(dir, "lock", ".dat");
        int fd = Posix.open(f.toString(), Posix.O_RDWR | Posix.O_CLOEXEC);
        long size = 2 * MiB, a = 0;
        try {
            io.guestmem.sys.Memfd.ftruncate(fd, size);
            a = Mman.mmap(0, size, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0);
            java.lang.foreign.MemorySegment m = java.lang.foreign.MemorySegment.ofAddress(a).reinterpret(size);
            for (long off = 0; off < size; off += PS) m.set(java.lang.foreign.ValueLayout.JAVA_LONG, off, off + 1);
            Memslot s = slot(1, 0, 0x100000, size, a);
            SlotCharge c = lock.lockMemslot(1, LockMode.READ_WRITE);
            System.out.println("READ_WRITE lock of a shared mapping of " + f + " (" + Smaps.vmaOf(a).name() + "): " + c);
            if (c.pinKind() == PinKind.LONGTERM_PIN) {
                lock.unlockMemslot(1);
                memslots.deleteMemslot(0, 1);
                Assumptions.abort("the filesystem of " + f.toAbsolutePath() + " needs no dirty tracking: GUP pins it long-term");
            }
            assertEquals(PinKind.MLOCK, c.pinKind(), "FOLL_WRITE|FOLL_LONGTERM of a file needing dirty tracking is EFAULT");
            assertEquals(pinBaseline, vmPin(), "the refused pin left nothing");
            assertEquals(baseline + size, vmLck());
            assertArrayEquals(pagemapPfns(a, s.npages()), lock.stage2(1).pfns());
            lock.unlockMemslot(1);
            assertEquals(baseline, vmLck());
            memslots.deleteMemslot(0, 1);
        } finally {
            if (a != 0) Mman.munmap(a, size);
            Posix.close(fd);
            java.nio.file.Files.delete(f);
        }
    }

    @Test
    void readonlySlotLocksForReadOnly() {
        HostRegion r = anon(2 * MiB);
        slot(3, Memslot.READONLY, 0x400000, r.size(), r.address());
        kvmError(Errno.EPERM, () -> lock.lockMemslot(3, LockMode.READ_WRITE));
        assertEquals(baseline, vmLck());
        assertEquals(pinBaseline, vmPin());
        lock.lockMemslot(3, LockMode.READ);
        assertFalse(lock.relaxWrite(0, 0x400), "a READONLY slot's entries are never relaxed");
        lock.unlockMemslot(3);
    }

    @Test
    void ebusyAndEinval() {
        HostRegion r = anon(2 * MiB);
        slot(1, 0x100000, r);
        kvmError(Errno.EINVAL, () -> lock.lockMemslot(9, LockMode.READ));          // no such slot
        kvmError(Errno.EINVAL, () -> lock.lockMemslot(-1, LockMode.READ));
        kvmError(Errno.EINVAL, () -> lock.lockMemslot(5, 1, LockMode.READ));       // address space
        kvmError(Errno.EINVAL, () -> lock.unlockMemslot(1));                       // not locked
        kvmError(Errno.EINVAL, () -> lock.unlockMemslot(40000));                   // invalid id
        kvmError(Errno.EINVAL, () -> lock.stage2(1));
        lock.lockMemslot(1, LockMode.READ);
        long locked = vmLck() + vmPin();
        assertEquals(pinBaseline + shown(2 * MiB), vmPin());
        KvmException e = kvmError(Errno.EBUSY, () -> lock.lockMemslot(1, LockMode.READ_WRITE));
        assertTrue(e.getMessage().contains("already locked"), e.getMessage());
        assertEquals(locked, vmLck() + vmPin(), "EBUSY changed nothing");
        assertEquals(LockMode.READ, lock.mode(0, 1));
        lock.unlockMemslot(1);
        kvmError(Errno.EINVAL, () -> lock.unlockMemslot(1));
    }

    @Test
    void lockedSlotCannotBeDeletedMovedOrReflagged() {
        HostRegion r = anon(2 * MiB);
        Memslot s = slot(4, 0x100000, r);
        lock.lockMemslot(4, LockMode.READ_WRITE);
        long gen = memslots.generation();
        KvmException del = kvmError(Errno.EBUSY, () -> memslots.deleteMemslot(0, 4));
        assertTrue(del.getMessage().contains("locked"), del.getMessage());
        kvmError(Errno.EBUSY, () -> memslots.setMemslot(0, 4, 0, 0x900000, r.size(), r.address()));          // MOVE
        kvmError(Errno.EBUSY, () -> memslots.setMemslot(0, 4, Memslot.LOG_DIRTY_PAGES, 0x100000, r.size(), r.address()));
        assertEquals(gen, memslots.generation(), "nothing published");
        assertEquals(s, memslots.current().byId(4));
        assertEquals(0, notifier.sequence(), "a vetoed change invalidates nothing");
        // Other slots change freely.
        HostRegion r2 = anon(2 * MiB);
        slot(5, 0x800000, r2);
        memslots.deleteMemslot(0, 5);
        lock.unlockMemslot(4);
        memslots.deleteMemslot(0, 4);
        assertEquals(null, memslots.current().byId(4));
    }

    @Test
    void writeLockOfALoggingSlotIsEpermAndLoggingMayBeTurnedOnOnlyForAReadLock() {
        HostRegion r = anon(2 * MiB);
        slot(1, Memslot.LOG_DIRTY_PAGES, 0x100000, r.size(), r.address());
        KvmException e = kvmError(Errno.EPERM, () -> lock.lockMemslot(1, LockMode.READ_WRITE));
        assertTrue(e.getMessage().contains("logs dirty pages"), e.getMessage());
        assertEquals(pinBaseline, vmPin());
        lock.lockMemslot(1, LockMode.READ); // a READ lock of a logging slot is allowed
        lock.unlockMemslot(1);

        Memslot s = slot(2, 0, 0x400000, r.size(), r.address());
        lock.lockMemslot(2, LockMode.READ);
        long g = s.baseGfn() + 1;
        assertTrue(lock.relaxWrite(0, g));
        memslots.setMemslot(0, 2, Memslot.LOG_DIRTY_PAGES, 0x400000, r.size(), r.address()); // allowed
        assertTrue(memslots.current().byId(2).logsDirty());
        assertTrue(lock.isLocked(2), "still locked, now logging");
        assertFalse(lock.stage2Writable(0, g), "enabling dirty logging write-protects the slot's entries again");
        assertTrue(lock.relaxWrite(0, g), "the next write relaxes it (and is what the dirty log sees)");
        assertEquals(memslots.current().byId(2), lock.stage2(0, 2).slot(), "the lock follows the committed slot");
        // Turning logging off again, or any other change, is refused.
        kvmError(Errno.EBUSY, () -> memslots.setMemslot(0, 2, 0, 0x400000, r.size(), r.address()));
        kvmError(Errno.EBUSY, () -> memslots.deleteMemslot(0, 2));
        lock.unlockMemslot(2);
        assertEquals(pinBaseline, vmPin());
        memslots.deleteMemslot(0, 2);
    }

    @Test
    void capabilityIsRefusedWhileAnySlotIsLocked() {
        HostRegion r = anon(2 * MiB);
        slot(6, 0x100000, r);
        VmCapabilityGate gate = new VmCapabilityGate(lock);
        lock.lockMemslot(6, LockMode.READ);
        KvmException e = kvmError(Errno.EINVAL, () -> gate.enableCapability(VmCapabilityGate.MTE));
        assertTrue(e.getMessage().contains("slot 6") && e.getMessage().contains("unsanitised"), e.getMessage());
        assertFalse(gate.isEnabled(VmCapabilityGate.MTE));
        gate.enableCapability("KVM_CAP_HALT_POLL"); // not forbidden
        lock.unlockMemslot(6);
        gate.enableCapability(VmCapabilityGate.MTE);
        assertTrue(gate.isEnabled(VmCapabilityGate.MTE));
    }

    @Test
    void unlockAllUnlocksEverySlotOfBothKindsAndReportsNothingDirty() {
        HostRegion a = readOnlyAnon(2 * MiB), b = anon(4 * MiB), c = anon(2 * MiB);
        slot(1, Memslot.LOG_DIRTY_PAGES, 0x100000, a.size(), a.address());
        slot(2, Memslot.LOG_DIRTY_PAGES, 0x400000, b.size(), b.address());
        slot(3, 0, 0x900000, c.size(), c.address());
        assertEquals(PinKind.MLOCK, lock.lockMemslot(1, LockMode.READ).pinKind());
        assertEquals(PinKind.LONGTERM_PIN, lock.lockMemslot(2, LockMode.READ).pinKind());
        assertEquals(PinKind.LONGTERM_PIN, lock.lockMemslot(3, LockMode.READ_WRITE).pinKind());
        assertEquals(baseline + 2 * MiB, vmLck());
        assertEquals(pinBaseline + shown(6 * MiB), vmPin());
        assertEquals(3, lock.unlockAll());
        assertEquals(baseline, vmLck());
        assertEquals(pinBaseline, vmPin());
        assertFalse(lock.anyLocked());
        assertEquals(0, dirty.size(), "no write-locked slot can log dirty pages, so no unlock reports any");
        assertEquals(0, lock.unlockAll());
    }

    @Test
    void aliasedSlotsAndApplicationLocksAreNotUnlockedByEachOther() {
        HostRegion r = readOnlyAnon(4 * MiB);
        slot(1, 0x100000, r);
        slot(2, 0, 0x10000000, r.size(), r.address()); // the same hva at another gpa
        lock.lockMemslot(1, LockMode.READ);
        lock.lockMemslot(2, LockMode.READ);
        assertEquals(baseline + 4 * MiB, vmLck(), "the kernel counts the range once");
        assertEquals(r.size() / PS, lock.status().uncountedPages(), "the second lock is charged anyway (account_locked_vm)");
        lock.unlockMemslot(1);
        assertEquals(baseline + 4 * MiB, vmLck(), "slot 2 still holds the range locked");
        lock.unlockMemslot(2);
        assertEquals(baseline, vmLck());

        HostRegion app = HostRegion.anonymous(2 * MiB).mlock().create();
        regions.add(app);
        long appLocked = vmLck();
        assertEquals(baseline + 2 * MiB, appLocked);
        slot(3, 0, 0x20000000, app.size(), app.address());
        lock.lockMemslot(3, LockMode.READ_WRITE); // pinned long-term over the application's mlock
        assertEquals(appLocked, vmLck());
        assertEquals(pinBaseline + shown(2 * MiB), vmPin());
        lock.unlockMemslot(3);
        assertEquals(appLocked, vmLck(), "the application's own mlock is left alone");
        Mman.mprotect(app.address(), app.size(), Mman.PROT_READ);
        assertEquals(PinKind.MLOCK, lock.lockMemslot(3, LockMode.READ).pinKind());
        assertEquals(appLocked, vmLck());
        lock.unlockMemslot(3);
        assertEquals(appLocked, vmLck(), "an mlocked slot over the application's mlock leaves it alone too");
        Mman.munlock(app.address(), app.size());
    }

    @Test
    void aliasedWriteLockedSlotsArePinnedTwiceAsKvmPinsThem() {
        HostRegion r = anon(4 * MiB);
        slot(1, 0x100000, r);
        slot(2, 0, 0x10000000, r.size(), r.address());
        lock.lockMemslot(1, LockMode.READ_WRITE);
        lock.lockMemslot(2, LockMode.READ_WRITE);
        assertEquals(pinBaseline + shown(8 * MiB), vmPin(), "each slot's pin counts (two tables, two pins per page)");
        lock.unlockMemslot(1);
        assertEquals(pinBaseline + shown(4 * MiB), vmPin(), "slot 2 still pins the range");
        assertArrayEquals(pagemapPfns(r.address(), r.size() / PS), lock.stage2(2).pfns());
        lock.unlockMemslot(2);
    }

    @Test
    void invalidationDuringALargeLockIsEagainWithNothingLeftLocked() throws Exception {
        long size = 512 * MiB;
        HostRegion r = anon(size);
        Memslot s = slot(1, 0x40000000L, r);
        AtomicReference<String> invalidated = new AtomicReference<>();
        java.util.concurrent.atomic.AtomicLong rssAtInvalidation = new java.util.concurrent.atomic.AtomicLong();
        CompletableFuture<Void> invalidator = CompletableFuture.runAsync(() -> {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (lock.lockInProgress() == null) {
                if (System.nanoTime() > deadline) throw new IllegalStateException("the lock never started");
                Thread.onSpinWait();
            }
            // Strike in the middle of faulting in: once the kernel shows 64 MiB more of the slot resident.
            while (Smaps.vmaOf(r.address()).rss() < 64 * MiB && lock.lockInProgress() != null) {
                if (System.nanoTime() > deadline) throw new IllegalStateException("the slot never became resident");
                Thread.onSpinWait();
            }
            rssAtInvalidation.set(Smaps.vmaOf(r.address()).rss());
            long hva = r.address() + size / 2;
            try (Invalidation inv = notifier.invalidate(hva, hva + PS)) {
                invalidated.set(inv.toString());
            }
        });
        KvmException e = kvmError(Errno.EAGAIN, () -> lock.lockMemslot(1, LockMode.READ_WRITE));
        invalidator.get(60, TimeUnit.SECONDS);
        assertNotNull(invalidated.get());
        System.out.println("invalidated with " + rssAtInvalidation.get() / MiB + " MiB of 512 resident: " + e.getMessage());
        assertTrue(rssAtInvalidation.get() >= 64 * MiB && rssAtInvalidation.get() < size, "hit while faulting in");
        assertTrue(e.getMessage().contains("nothing is left locked"), e.getMessage());
        assertEquals(baseline, vmLck(), "VmLck at its baseline after EAGAIN");
        assertEquals(pinBaseline, vmPin(), "VmPin at its baseline after EAGAIN");
        assertEquals(0, Smaps.vmaOf(r.address()).locked());
        assertFalse(lock.isLocked(1));
        assertEquals(null, lock.lockInProgress());
        // Tried again without an invalidation: it locks.
        lock.lockMemslot(1, LockMode.READ);
        assertEquals(pinBaseline + shown(size), vmPin());
        assertEquals(s.npages(), lock.stage2(1).pfns().length);
        lock.unlockMemslot(1);
    }

    @Test
    void invalidationAfterPinningRollsBackThePinAndTheMlock() {
        HostRegion r = anon(8 * MiB);
        slot(1, 0x100000, r);
        lock.afterPin = () -> {
            assertEquals(pinBaseline + shown(8 * MiB), vmPin(), "pinned at this point");
            notifier.invalidate(r.address(), r.address() + PS).close();
        };
        kvmError(Errno.EAGAIN, () -> lock.lockMemslot(1, LockMode.READ_WRITE));
        lock.afterPin = null;
        assertEquals(pinBaseline, vmPin(), "every page unpinned again");
        assertFalse(lock.isLocked(1));
        HostRegion ro = readOnlyAnon(4 * MiB);
        slot(3, 0, 0x2000000, ro.size(), ro.address());
        lock.afterPin = () -> {
            assertEquals(baseline + 4 * MiB, vmLck(), "mlocked at this point");
            notifier.invalidate(ro.address(), ro.address() + PS).close();
        };
        kvmError(Errno.EAGAIN, () -> lock.lockMemslot(3, LockMode.READ));
        lock.afterPin = null;
        assertEquals(baseline, vmLck(), "every page munlocked again");
        assertFalse(lock.isLocked(3));
        // An invalidation of another slot's range does not disturb the lock.
        HostRegion other = anon(2 * MiB);
        slot(2, 0x4000000, other);
        lock.afterPin = () -> notifier.invalidate(other.address(), other.address() + PS).close();
        lock.lockMemslot(1, LockMode.READ);
        lock.afterPin = null;
        assertTrue(lock.isLocked(1));
        lock.unlockMemslot(1);
    }

    @Test
    void slotChangedWhileLockingIsEagain() {
        HostRegion r = anon(2 * MiB);
        slot(1, 0x100000, r);
        lock.afterPin = () -> memslots.setMemslot(0, 1, Memslot.LOG_DIRTY_PAGES, 0x100000, r.size(), r.address());
        kvmError(Errno.EAGAIN, () -> lock.lockMemslot(1, LockMode.READ));
        lock.afterPin = null;
        assertEquals(baseline, vmLck());
    }

    @Test
    void invalidationOfALockedSlotZapsItsEntries() {
        HostRegion r = anon(2 * MiB);
        Memslot s = slot(1, 0x100000, r);
        lock.lockMemslot(1, LockMode.READ_WRITE);
        long before = lock.invalidatedPages();
        try (Invalidation inv = notifier.invalidate(r.address() + 2 * PS, r.address() + 4 * PS)) {
            assertTrue(inv.affectsGuest());
        }
        assertEquals(before + 2, lock.invalidatedPages());
        assertEquals(PagemapEntry.PFN_NONE, lock.lockedPfn(0, s.baseGfn() + 2));
        assertEquals(PagemapEntry.PFN_NONE, lock.lockedPfn(0, s.baseGfn() + 3));
        assertNotEquals(PagemapEntry.PFN_NONE, lock.lockedPfn(0, s.baseGfn() + 4));
        assertFalse(lock.relaxWrite(0, s.baseGfn() + 2));
        Stage2Mapping m = lock.stage2(1);
        assertEquals(Set.of(2, 3), new HashSet<>(m.invalidated().stream().boxed().toList()));
        assertTrue(lock.isLocked(1), "still locked and charged");
        lock.unlockMemslot(1);
    }

    @Test
    void unmappedOrPfnmapHvaIsEfaultAndPopulateFailureRollsBack() {
        slot(1, 0, 0x100000, 2 * MiB, 0x100000000L); // nothing mapped there
        kvmError(Errno.EFAULT, () -> lock.lockMemslot(1, LockMode.READ));
        io.guestmem.host.Pfnmap.unavailableReason().ifPresent(why -> {
            System.out.println("SKIP unmappedOrPfnmapHvaIsEfaultAndPopulateFailureRollsBack (pfnmap part; the unmapped part passed): " + why);
            org.junit.jupiter.api.Assumptions.abort(why);
        });
        HostRegion ring = HostRegion.perfRing(8).create();
        regions.add(ring);
        long sz = ring.size() / PS * PS;
        slot(2, 0, 0x800000, sz, ring.address());
        kvmError(Errno.EFAULT, () -> lock.lockMemslot(2, LockMode.READ));
        assertEquals(baseline, vmLck());
    }

    @Test
    void hugetlb2MSlotLocksAndIsChargedInBasePages() {
        HugePageSize h2m;
        try {
            h2m = HugePagePools.size(2 * MiB);
        } catch (RuntimeException e) {
            Assumptions.abort("no 2M hugetlb pool: " + e);
            return;
        }
        try (HugePagePools.Reservation res = HugePagePools.raise(h2m, 4)) {
            HostRegion r = HostRegion.hugetlb(8 * MiB, h2m).create();
            regions.add(r);
            Memslot s = slot(1, 0x200000, r);
            lock.lockMemslot(1, LockMode.READ_WRITE);
            long[] now = pagemapPfns(r.address(), s.npages());
            Stage2Mapping m = lock.stage2(1);
            assertArrayEquals(now, m.pfns(), "recorded pfns are pagemap's");
            for (int i = 0; i < now.length; i++) {
                int per = (int) (2 * MiB / PS); // base pages per 2M page: 512 with 4K pages, 128 with 16K
                assertEquals(now[i - i % per] + i % per, now[i], "a 2M page's base pages are contiguous");
            }
            try (KPageFlags kf = KPageFlags.open()) {
                assertTrue(kf.flags(now[0]).contains(KPageFlag.HUGE));
            }
            // A long-term pin of hugetlb counts in VmPin, in base pages (io_buffer_account_pin: whole huge pages).
            assertEquals(PinKind.LONGTERM_PIN, lock.pinKind(0, 1));
            assertEquals(pinBaseline + shown(8 * MiB), vmPin(), "VmPin counts the hugetlb pages");
            assertEquals(baseline, vmLck());
            assertEquals(0, lock.status().uncountedPages());
            lock.unlockMemslot(1);
            assertEquals(pinBaseline, vmPin());
            // Read-only hugetlb is mlocked: the kernel's mlock skips hugetlb VMAs, VmLck does not move, the lock
            // charges the base pages anyway.
            Mman.mprotect(r.address(), r.size(), Mman.PROT_READ);
            assertEquals(PinKind.MLOCK, lock.lockMemslot(1, LockMode.READ).pinKind());
            assertArrayEquals(now, lock.stage2(1).pfns(), "the same huge pages");
            assertEquals(baseline, vmLck(), "mlock does not count hugetlb in VmLck");
            MemlockStatus st = lock.status();
            assertEquals(s.npages(), st.uncountedPages());
            assertEquals(8 * MiB / PS, st.lockedPages());
            assertEquals(baseline / PS + vmPin() / PS + s.npages(), st.lockedVmPages());
            lock.unlockMemslot(1);
            assertEquals(0, lock.status().uncountedPages());
            r.close();
        }
    }

    @Test
    void thpSlotLocksWithPagemapsPfns() {
        long thp = HugePagePools.thpSize();
        long size = Math.max(8 * MiB, 2 * thp);   // two PMDs: 4 MiB on x86, 64 MiB with 16 KiB pages (32 MiB PMDs)
        HostRegion r = HostRegion.thp(size).create();
        regions.add(r);
        Memslot s = slot(1, 0x200000, r);
        lock.lockMemslot(1, LockMode.READ_WRITE);
        assertEquals(pinBaseline + shown(size), vmPin());
        long[] now = pagemapPfns(r.address(), s.npages());
        assertArrayEquals(now, lock.stage2(1).pfns());
        long anonHuge = Smaps.vmaOf(r.address()).anonHugePages();
        System.out.println("THP slot: AnonHugePages " + anonHuge + " of " + r.size() + " (THP size " + thp + ")");
        assertTrue(anonHuge > 0, "the THP region is backed by huge pages");
        try (KPageFlags kf = KPageFlags.open()) {
            assertTrue(kf.flags(now[0]).contains(KPageFlag.THP));
        }
        lock.unlockMemslot(1);
    }

    private static List<Long> boxed(long[] a) {
        List<Long> l = new ArrayList<>(a.length);
        for (long x : a) l.add(x);
        return l;
    }
}
