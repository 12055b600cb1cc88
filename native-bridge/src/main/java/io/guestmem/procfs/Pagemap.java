package io.guestmem.procfs;

import io.guestmem.sys.Arch;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * {@code /proc/self/pagemap} or {@code /proc/<pid>/pagemap}, opened once: the kernel's page-table view of a
 * range of virtual pages, one 64-bit entry per base page (decode with {@link PagemapEntry}).
 *
 * <p>Every range read is ONE {@code pread} (ranges above {@link ProcFile#MAX_CHUNK_ENTRIES} pages are
 * split into chunks of that many). The {@code MemorySegment} and {@code long[]} overloads write into the
 * caller's buffer and allocate nothing; the others allocate their result.
 *
 * <p>PFN visibility is decided by the kernel when the file is opened (CAP_SYS_ADMIN of the opener in the
 * initial user namespace); {@link #pfnVisible()} reports what a probe of one of our own present pages saw,
 * so it is the kernel's answer, not a guess from capability bits.
 *
 * <p>Reads may run concurrently from several threads; {@link #close()} must not race with them.
 */
public final class Pagemap extends ProcFile {
    private final int targetPid;
    private final boolean pfnVisible;
    private final long userLimit;

    private Pagemap(String path, int checkPid, int targetPid) {
        super(path, checkPid);
        this.targetPid = targetPid;
        boolean visible;
        long limit;
        try {
            visible = checkPid == 0 ? probeVisibility(this) : probeSelfVisibility();
            limit = probeUserLimit(this);
        } catch (RuntimeException e) {
            close();
            throw e;
        }
        this.pfnVisible = visible;
        this.userLimit = limit;
    }

    /** This process's pagemap. */
    public static Pagemap openSelf() {
        return new Pagemap("/proc/self/pagemap", 0, Posix.getpid());
    }

    /**
     * Another process's pagemap. Needs the rights the kernel asks (PTRACE_MODE_READ on the target):
     * without them the open fails with a {@link io.guestmem.sys.SyscallException} (EACCES/EPERM);
     * a pid that does not exist is a {@link NoSuchProcessException}.
     */
    public static Pagemap open(int pid) {
        if (pid <= 0) throw new IllegalArgumentException("pid must be positive, got " + pid);
        if (pid == Posix.getpid()) return openSelf();
        return new Pagemap("/proc/" + pid + "/pagemap", pid, pid);
    }

    /** The pid whose address space this reads. */
    public int pid() {
        return targetPid;
    }

    /**
     * The end of the target's user address space ({@code mm->task_size}) as this file reports it: the first
     * address whose page has no entry. Reads at or past it are {@link AddressRangeException}s, checked here
     * because arm64's {@code pagemap_read} untags the top byte (TBI), so 2^60 would alias address 0.
     */
    public long userAddressLimit() {
        return userLimit;
    }

    /** Whether this reader sees pfns (false: present pages report {@link PagemapEntry#PFN_HIDDEN}). */
    public boolean pfnVisible() {
        return pfnVisible;
    }

    /**
     * Fills {@code out} (native, at least {@code pages * 8} bytes) with the raw entries of {@code pages}
     * pages from {@code address}. Zero allocation for ranges up to one chunk.
     */
    public void read(long address, long pages, MemorySegment out) {
        long index = check(address, pages);
        checkNative(out, pages * 8);
        finish(address, pages, readEntries(index, pages, out));
    }

    /** Fills {@code out[off .. off+pages)} with the raw entries of {@code pages} pages from {@code address}. */
    public void read(long address, long[] out, int off, int pages) {
        long index = check(address, pages);
        if (off < 0 || off + pages > out.length || off + pages < 0)
            throw new IndexOutOfBoundsException("out[" + off + ".." + (off + (long) pages) + ") of " + out.length);
        finish(address, pages, readEntries(index, out, off, pages));
    }

    /** The raw entries of {@code pages} pages from {@code address}. */
    public long[] read(long address, int pages) {
        check(address, pages); // before allocating: a negative count is an IllegalArgumentException, not NegativeArraySize
        long[] out = new long[pages];
        read(address, out, 0, pages);
        return out;
    }

    /** The raw entry of the page at {@code address}. */
    public long readRaw(long address) {
        long[] one = new long[1];
        read(address, one, 0, 1);
        return one[0];
    }

    /** The decoded entry of the page at {@code address}. */
    public PagemapEntry entry(long address) {
        return new PagemapEntry(address, readRaw(address), pfnVisible);
    }

    /** The decoded entries of {@code pages} pages from {@code address} (one pread). */
    public List<PagemapEntry> entries(long address, int pages) {
        long[] raw = read(address, pages);
        List<PagemapEntry> list = new ArrayList<>(pages);
        for (int i = 0; i < pages; i++) list.add(new PagemapEntry(address + i * Posix.PAGE_SIZE, raw[i], pfnVisible));
        return list;
    }

    /** The pfn of a raw entry read by this reader: a pfn, {@link PagemapEntry#PFN_HIDDEN} or {@code PFN_NONE}. */
    public long pfnOf(long raw) {
        return PagemapEntry.pfn(raw, pfnVisible);
    }

    private long check(long address, long pages) {
        if (pages <= 0) throw new IllegalArgumentException("page count must be positive, got " + pages);
        if ((address & (Posix.PAGE_SIZE - 1)) != 0)
            throw new IllegalArgumentException("address " + Fmt.hex(address) + " is not aligned to the page size "
                    + Fmt.size(Posix.PAGE_SIZE));
        long vpn = Long.divideUnsigned(address, Posix.PAGE_SIZE);
        // The file offset is vpn * 8 and must stay a positive off_t; the last page must not wrap.
        long maxPages = Long.divideUnsigned(-1L, Posix.PAGE_SIZE) + 1;
        if (pages > maxPages - vpn)
            throw new AddressRangeException(pages + " pages from " + Fmt.hex(address) + " wrap past the top of the "
                    + "64-bit address space");
        if (Long.compareUnsigned(address, userLimit) >= 0 || pages > (userLimit - address) / Posix.PAGE_SIZE)
            throw new AddressRangeException(pages + " pages from " + Fmt.hex(address) + " reach past " + Fmt.hex(userLimit)
                    + " (end of the user address space of pid " + targetPid + ")");
        return vpn;
    }

    private void finish(long address, long pages, long got) {
        if (got == pages) return;
        if (!processAlive()) throw new NoSuchProcessException(targetPid, "pagemap", null);
        throw new AddressRangeException("pagemap of pid " + targetPid + " ends at " + Fmt.hex(address + got * Posix.PAGE_SIZE)
                + " (end of the user address space): asked for " + pages + " pages from " + Fmt.hex(address));
    }

    /** Reads the entry of a page we own and have just written: a present entry with pfn 0 means hidden. */
    private static boolean probeVisibility(Pagemap self) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment page = arena.allocate(Posix.PAGE_SIZE * 2, Posix.PAGE_SIZE);
            MemorySegment probe = arena.allocate(8, 8);
            for (int attempt = 0; attempt < 3; attempt++) {
                page.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (byte) 1); // fault it in
                self.readEntries(page.address() / Posix.PAGE_SIZE, 1, probe);
                long raw = probe.get(U64, 0);
                if (PagemapEntry.isPresent(raw)) return (raw & PagemapEntry.PFN_MASK) != 0;
                // Reclaimed between the write and the read: try again.
            }
            throw new ProcfsException("pagemap probe: a page just written is not present");
        }
    }

    /**
     * Finds mm->task_size by bisection on one-entry reads: pagemap_read returns an entry for every page below
     * task_size (holes included) and nothing at or above it, for addresses the kernel's untagging leaves
     * alone. The search ceiling is the arch's ({@link Arch#pagemapProbeCeiling()}), above every task_size.
     */
    private static long probeUserLimit(Pagemap self) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment one = arena.allocate(8, 8);
            long lo = 0; // vpn 0 always has an entry
            long hi = Arch.CURRENT.pagemapProbeCeiling() / Posix.PAGE_SIZE; // never has one
            if (self.readEntries(hi, 1, one) != 0)
                throw new ProcfsException(self.path + " has an entry at " + Fmt.hex(hi * Posix.PAGE_SIZE)
                        + ", above any user address space");
            while (hi - lo > 1) {
                long mid = (lo + hi) >>> 1;
                if (self.readEntries(mid, 1, one) == 1) lo = mid;
                else hi = mid;
            }
            return hi * Posix.PAGE_SIZE;
        }
    }

    private static boolean probeSelfVisibility() {
        try (Pagemap self = openSelf()) {
            return self.pfnVisible;
        }
    }
}
