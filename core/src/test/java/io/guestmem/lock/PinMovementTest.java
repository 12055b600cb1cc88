package io.guestmem.lock;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.host.HugePagePools;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.DirtyLog;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Mempolicy;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Whether a locked slot's pages stay where the lock recorded them: the kernel is asked to move them
 * ({@code move_pages(2)}, a compaction of all memory, {@code MADV_COLLAPSE}) on three slots of 4K pages, one
 * PMD each: anonymous memory and a memfd, both pinned long-term ({@link PinKind#LONGTERM_PIN}), and a
 * read-only memfd mapping, mlocked ({@link PinKind#MLOCK}). The test asserts what the kernel does with each and
 * prints a small report: a pinned page is never moved (MADV_COLLAPSE fails, its pfns are pagemap's before and
 * after), an mlocked one is replaced by a THP, and the pfns its lock recorded are stale with no invalidation
 * having told the lock.
 */
class PinMovementTest {
    static final long PS = Posix.PAGE_SIZE;

    final long pmd = HugePagePools.thpSize();
    final int pages = (int) (pmd / PS);
    Memslots memslots;
    MmuNotifier notifier;
    MemslotLock lock;
    final List<long[]> maps = new ArrayList<>(); // {address, length}
    final List<Integer> fds = new ArrayList<>();
    final List<String> report = new ArrayList<>();

    @BeforeEach
    void setUp() {
        Assumptions.assumeTrue(pmd > PS, "no transparent huge pages on this kernel");
        memslots = new Memslots();
        notifier = new MmuNotifier(memslots);
        lock = new MemslotLock(notifier, DirtyLog.NONE);
    }

    @AfterEach
    void tearDown() {
        lock.close();
        for (long[] m : maps) Mman.munmap(m[0], m[1]);
        for (int fd : fds) Posix.close(fd);
        System.out.println("pin movement report (" + pages + " pages of " + PS / 1024 + " KiB per slot):");
        for (String l : report) System.out.println("  " + l);
    }

    /** A PMD-aligned range of {@code pmd} bytes inside a reservation twice as big (unmapped at the end). */
    long alignedReservation() {
        long base = Mman.mmap(0, 2 * pmd, Mman.PROT_NONE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        maps.add(new long[] {base, 2 * pmd});
        return (base + pmd - 1) & -pmd;
    }

    /** Anonymous 4K pages, written, at a PMD-aligned address (MADV_NOHUGEPAGE while faulting, then allowed again). */
    long anon4k() {
        long a = Mman.mmap(alignedReservation(), pmd, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS | Mman.MAP_FIXED, -1, 0);
        Mman.madvise(a, pmd, Mman.MADV_NOHUGEPAGE);
        fill(a);
        Mman.madvise(a, pmd, Mman.MADV_HUGEPAGE);
        return a;
    }

    /** A memfd's 4K pages, written, mapped shared at a PMD-aligned address from file offset 0. */
    long memfd4k(boolean writable) {
        int fd = Memfd.create("pin-movement", Memfd.MFD_CLOEXEC);
        fds.add(fd);
        Memfd.ftruncate(fd, pmd);
        long a = Mman.mmap(alignedReservation(), pmd, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED | Mman.MAP_FIXED, fd, 0);
        fill(a);
        if (!writable) Mman.mprotect(a, pmd, Mman.PROT_READ);
        return a;
    }

    void fill(long a) {
        MemorySegment s = MemorySegment.ofAddress(a).reinterpret(pmd);
        for (long off = 0; off < pmd; off += PS) s.set(ValueLayout.JAVA_LONG, off, a + off);
    }

    static long[] pfns(long a, int n) {
        try (Pagemap pm = Pagemap.openSelf()) {
            long[] raw = pm.read(a, n);
            for (int i = 0; i < n; i++) raw[i] = pm.pfnOf(raw[i]);
            return raw;
        }
    }

    static int moved(long[] before, long[] after) {
        int n = 0;
        for (int i = 0; i < before.length; i++) if (before[i] != after[i]) n++;
        return n;
    }

    record Slot(String name, int id, long hva, PinKind kind, long[] recorded) {}

    Slot lockSlot(String name, int id, long hva, LockMode mode) {
        long gpa = id * 0x10000000L;
        memslots.setMemslot(0, id, 0, gpa, pmd, hva);
        SlotCharge c = lock.lockMemslot(id, mode);
        long[] recorded = lock.stage2(id).pfns();
        assertArrayEquals(pfns(hva, pages), recorded, name + ": the lock recorded pagemap's pfns");
        try (KPageFlags kf = KPageFlags.open()) {
            assertFalse(kf.flags(recorded[0]).contains(KPageFlag.THP), name + ": 4K pages before any attempt");
        }
        return new Slot(name, id, hva, c.pinKind(), recorded);
    }

    @Test
    void pinnedPagesStayPutWhereMlockedOnesMove() throws IOException {
        Slot anon = lockSlot("anon, READ_WRITE", 1, anon4k(), LockMode.READ_WRITE);
        Slot shm = lockSlot("memfd, READ_WRITE", 2, memfd4k(true), LockMode.READ_WRITE);
        Slot ro = lockSlot("memfd read-only, READ", 3, memfd4k(false), LockMode.READ);
        assertEquals(PinKind.LONGTERM_PIN, anon.kind());
        assertEquals(PinKind.LONGTERM_PIN, shm.kind());
        assertEquals(PinKind.MLOCK, ro.kind());
        List<Slot> slots = List.of(anon, shm, ro);

        // 1. move_pages(2). With one NUMA node the only target is the page's own node, which the kernel skips
        //    (add_page_for_migration: already there): a no-op for every kind. With more, another node.
        String online = Files.readString(Path.of("/sys/devices/system/node/online")).trim();
        boolean oneNode = online.equals("0");
        for (Slot s : slots) {
            int node = Mempolicy.nodeOf(s.hva());
            int target = oneNode ? node : (node == 0 ? 1 : 0);
            long[] addrs = new long[pages];
            for (int i = 0; i < pages; i++) addrs[i] = s.hva() + i * PS;
            int[] status = Mempolicy.movePages(addrs, target);
            long[] after = pfns(s.hva(), pages);
            report.add(s.name() + " [" + s.kind() + "] move_pages to node " + target + " (nodes online: " + online
                    + "): status " + summary(status) + ", " + moved(s.recorded(), after) + " pfns changed");
            if (oneNode) {
                for (int st : status) assertEquals(node, st, s.name() + ": the page stays on its node");
                assertArrayEquals(s.recorded(), after, s.name() + ": move_pages to the same node moves nothing");
            } else if (s.kind() == PinKind.LONGTERM_PIN) {
                assertArrayEquals(s.recorded(), after, s.name() + ": a pinned page is not migrated");
            }
        }

        // 2. Compaction of all memory (root only): mlocked pages may be moved (compact_unevictable_allowed),
        //    pinned ones may not. What happens to the mlocked slot depends on fragmentation: only reported.
        Path compact = Path.of("/proc/sys/vm/compact_memory");
        if (Files.isWritable(compact)) {
            Files.writeString(compact, "1");
            for (Slot s : slots) {
                long[] after = pfns(s.hva(), pages);
                report.add(s.name() + " [" + s.kind() + "] compact_memory: " + moved(s.recorded(), after) + " pfns changed");
                if (s.kind() == PinKind.LONGTERM_PIN) assertArrayEquals(s.recorded(), after, s.name() + ": compaction skips pinned pages");
            }
        } else {
            report.add("compact_memory not writable here: compaction not tried");
        }

        // 3. MADV_COLLAPSE: replaces the range's 4K pages by one THP (copying them) unless a page is pinned
        //    (collapse checks each page's reference count: SCAN_PAGE_COUNT, EAGAIN).
        for (Slot s : slots) {
            int r = collapse(s.hva());
            long[] after = pfns(s.hva(), pages);
            boolean thp;
            try (KPageFlags kf = KPageFlags.open()) {
                thp = kf.flags(after[0]).contains(KPageFlag.THP);
            }
            report.add(s.name() + " [" + s.kind() + "] MADV_COLLAPSE: " + (r == 0 ? "0" : io.guestmem.sys.Errno.nameOf(-r))
                    + ", " + moved(s.recorded(), after) + " pfns changed, THP afterwards: " + thp);
            if (s.kind() == PinKind.LONGTERM_PIN) {
                assertNotEquals(0, r, s.name() + ": a pinned range cannot be collapsed");
                assertArrayEquals(s.recorded(), after, s.name() + ": pinned pages stay put");
                assertArrayEquals(s.recorded(), lock.stage2(s.id()).pfns());
            } else {
                Assumptions.assumeTrue(r != -io.guestmem.sys.Errno.EINVAL.number, "MADV_COLLAPSE unsupported here (kernel < 6.1)");
                assertEquals(0, r, s.name() + ": the mlocked range was collapsed");
                assertTrue(thp, s.name() + ": a THP now backs it");
                assertEquals(pages, moved(s.recorded(), after), s.name() + ": every page replaced");
                // The lock was told nothing: it still reports the old pfns, which are no longer the guest's memory.
                Memslot m = memslots.current().byId(s.id());
                assertTrue(lock.stage2(s.id()).invalidated().isEmpty(), "no invalidation reached the lock");
                assertEquals(s.recorded()[0], lock.lockedPfn(0, m.baseGfn()));
                assertNotEquals(after[0], lock.lockedPfn(0, m.baseGfn()), "the recorded pfn is stale");
                assertNotEquals(PagemapEntry.PFN_NONE, after[0]);
            }
            MemorySegment seg = MemorySegment.ofAddress(s.hva()).reinterpret(pmd);
            assertEquals(s.hva() + 5 * PS, seg.get(ValueLayout.JAVA_LONG, 5 * PS), "the data moved with the pages");
        }
        assertEquals(3, lock.unlockAll());
    }

    /** MADV_COLLAPSE, tried up to 3 times (a page still in a per-CPU LRU batch makes one attempt fail). */
    static int collapse(long a) {
        int r = 0;
        for (int i = 0; i < 3; i++) {
            r = Mman.madviseRaw(a, HugePagePools.thpSize(), Mman.MADV_COLLAPSE);
            if (r == 0 || r == -io.guestmem.sys.Errno.EINVAL.number) return r;
        }
        return r;
    }

    static String summary(int[] status) {
        int[] distinct = Arrays.stream(status).distinct().sorted().toArray();
        StringBuilder b = new StringBuilder();
        for (int d : distinct) {
            long n = Arrays.stream(status).filter(x -> x == d).count();
            if (!b.isEmpty()) b.append(", ");
            b.append(n).append("x ").append(d >= 0 ? "node " + d : io.guestmem.sys.Errno.nameOf(-d));
        }
        return b.toString();
    }
}
