package io.guestmem.it;

import io.guestmem.host.HugePagePools;
import io.guestmem.lock.LockMode;
import io.guestmem.lock.MemslotLock;
import io.guestmem.lock.SlotCharge;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.DirtyLog;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Runs in a child JVM for {@link PinDeathTest}: write-locks a slot over one PMD of a memfd (4K pages, mapped
 * shared at a PMD-aligned address), prints {@code key=value} lines (pid, the memfd's fd number, VmPin, the
 * pin kind, the first page's pfn) and {@code READY}, then holds the lock until it is killed.
 */
public final class PinHoldChild {
    public static void main(String[] args) throws Exception {
        long pmd = HugePagePools.thpSize(), ps = Posix.PAGE_SIZE;
        int fd = Memfd.create("pin-hold", 0);
        Memfd.ftruncate(fd, pmd);
        long base = Mman.mmap(0, 2 * pmd, Mman.PROT_NONE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        long hva = Mman.mmap((base + pmd - 1) & -pmd, pmd, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_SHARED | Mman.MAP_FIXED, fd, 0);
        MemorySegment s = MemorySegment.ofAddress(hva).reinterpret(pmd);
        for (long off = 0; off < pmd; off += ps) s.set(ValueLayout.JAVA_LONG, off, off + 1);
        Memslots memslots = new Memslots();
        MemslotLock lock = new MemslotLock(new MmuNotifier(memslots), DirtyLog.NONE);
        memslots.setMemslot(0, 1, 0, 0x100000000L, pmd, hva);
        long pinBefore = ProcStatus.self().vmPin();
        SlotCharge c = lock.lockMemslot(1, LockMode.READ_WRITE);
        out("pid", Posix.getpid());
        out("fd", fd);
        out("bytes", pmd);
        out("vmpin_before", pinBefore);
        out("vmpin", ProcStatus.self().vmPin());
        out("kind", c.pinKind());
        try (Pagemap pm = Pagemap.openSelf()) {
            out("pfn0", pm.pfnOf(pm.read(hva, 1)[0]));
        }
        System.out.println("READY");
        System.out.flush();
        System.in.read(); // held until killed (or the parent closes our stdin)
        lock.close();
    }

    static void out(String k, Object v) {
        System.out.println(k + "=" + v);
    }
}
