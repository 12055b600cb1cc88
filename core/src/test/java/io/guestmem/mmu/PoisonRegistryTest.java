package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.host.HostRegion;
import io.guestmem.host.Prefault;
import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Pagemap;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** The one HWPOISON decision over real pfns: a library mark and the kernel's bit take the same path. */
class PoisonRegistryTest {
    static final long PAGE = Posix.PAGE_SIZE;

    @Test
    void libraryMarkTakesTheKernelBitsPath() {
        try (HostRegion r = HostRegion.anonymous(2 * PAGE).prefault(Prefault.Mode.WRITE).create();
             Pagemap pm = Pagemap.openSelf(); KPageFlags kf = KPageFlags.open()) {
            PoisonRegistry poison = new PoisonRegistry();
            long pfn = pm.entry(r.address()).pfn().orElseThrow();
            long other = pm.entry(r.address() + PAGE).pfn().orElseThrow();
            long flags = kf.read(pfn);
            assertFalse(KPageFlag.HWPOISON.in(flags), "a healthy page");
            assertFalse(poison.isPoisoned(pfn, kf.read(pfn)));
            poison.poisonPfn(pfn);
            assertTrue(poison.isPoisoned(pfn, kf.read(pfn)), "the library mark answers HWPOISON through the kpageflags path");
            assertTrue(poison.isPoisoned(pfn, flags));
            assertTrue(poison.isPoisoned(pfn, RefcountedPage.UNKNOWN_FLAGS), "the mark holds where kpageflags is unreadable");
            assertFalse(poison.isPoisoned(other, kf.read(other)));
            assertTrue(poison.isPoisoned(other, KPageFlag.HWPOISON.mask), "the kernel bit alone answers HWPOISON");
            assertFalse(poison.isPoisoned(other, RefcountedPage.UNKNOWN_FLAGS), "an unread word is no poison bit");
            poison.unpoisonPfn(pfn);
            assertFalse(poison.isPoisoned(pfn, kf.read(pfn)));
            assertFalse(KPageFlag.HWPOISON.in(kf.read(pfn)), "the kernel never saw the mark");
        }
    }

    /**
     * DESTRUCTIVE: MADV_HWPOISON takes a real page of host memory out of service for good (until an unpoison
     * through debugfs, if the kernel has it). Runs only with {@code -Dguestmem.destructive=true}. The poisoned
     * page is never touched again (a touch would SIGBUS and kill the JVM); the mapping is unmapped.
     */
    @Test
    void realMadvHwpoisonDestructive() {
        // /proc/meminfo has HardwareCorrupted exactly when the kernel has CONFIG_MEMORY_FAILURE; without it
        // MADV_HWPOISON is EINVAL (this development machine's 6.18 guest kernel is built that way).
        boolean kernelHasIt;
        try {
            kernelHasIt = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/meminfo")).contains("HardwareCorrupted:");
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        if (!kernelHasIt) System.out.println("SKIP (absent): the kernel has no CONFIG_MEMORY_FAILURE (no HardwareCorrupted in "
                + "/proc/meminfo), so MADV_HWPOISON is EINVAL here");
        Assumptions.assumeTrue(kernelHasIt, "kernel without CONFIG_MEMORY_FAILURE");
        boolean enabled = Boolean.getBoolean("guestmem.destructive");
        if (!enabled) System.out.println("SKIP (destructive): MADV_HWPOISON would take a real page out of service; "
                + "run with -Dguestmem.destructive=true to enable");
        Assumptions.assumeTrue(enabled, "destructive test not enabled");
        long addr = Mman.mmap(0, PAGE, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        try (Pagemap pm = Pagemap.openSelf(); KPageFlags kf = KPageFlags.open()) {
            PoisonRegistry poison = new PoisonRegistry();
            Mman.madvise(addr, PAGE, Mman.MADV_POPULATE_WRITE);
            long pfn = pm.entry(addr).pfn().orElseThrow();
            assertFalse(poison.isPoisoned(pfn, kf.read(pfn)));
            Mman.madvise(addr, PAGE, Mman.MADV_HWPOISON);
            System.out.println("MADV_HWPOISON on pfn 0x" + Long.toHexString(pfn) + ": pagemap now " + pm.entry(addr));
            assertTrue(poison.isPoisoned(pfn, kf.read(pfn)), "kpageflags reports HWPOISON for the pfn");
            assertFalse(poison.isPfnPoisoned(pfn), "from the kernel's bit, not a library mark");
        } finally {
            Mman.munmap(addr, PAGE);
        }
    }
}
