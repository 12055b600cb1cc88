package io.guestmem.procfs;

import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Run by {@link UnprivilegedChildTest} in a child JVM without CAP_SYS_ADMIN: maps and writes 4 pages and
 * prints what the bridge reports for them, one {@code key=value} per line.
 */
public final class HiddenPfnProbe {
    public static void main(String[] args) {
        long len = 4 * Posix.PAGE_SIZE;
        long addr = Mman.mmap(0, len, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        MemorySegment s = MemorySegment.ofAddress(addr).reinterpret(len);
        for (long o = 0; o < len; o += Posix.PAGE_SIZE) s.set(ValueLayout.JAVA_BYTE, o, (byte) 7);
        System.out.println("uid=" + Posix.geteuid());
        System.out.println("capEff=" + Long.toHexString(ProcStatus.self().capEff()));
        try (Pagemap pm = Pagemap.openSelf()) {
            System.out.println("pfnVisible=" + pm.pfnVisible());
            for (PagemapEntry e : pm.entries(addr, 4)) {
                System.out.println("entry=" + e.present() + "," + e.pfnState() + "," + e.pfn().isPresent() + ","
                        + Long.toHexString(e.raw()) + "," + PagemapEntry.pfn(e.raw(), pm.pfnVisible()));
            }
        }
        try (KPageFlags k = KPageFlags.open()) {
            System.out.println("kpageflags=opened");
        } catch (SyscallException e) {
            System.out.println("kpageflags=" + e.getMessage());
        }
        Mman.munmap(addr, len);
    }
}
