package io.guestmem.host;

import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Mempolicy;
import io.guestmem.sys.Mman;
import io.guestmem.sys.PerfEvent;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.BitSet;
import java.util.Deque;
import org.apache.commons.lang3.Validate;

/**
 * The options of a {@link HostRegion} and the one place that creates it. {@link #create()} does each
 * step in order (fd, reservation, mapping, policy, advice, lock, prefault) and, if any step fails, undoes
 * the steps already done in reverse, so nothing (mapping, lock, fd) outlives a failed creation.
 *
 * <p>Layout: the whole span (guard + region + guard) is first reserved PROT_NONE, MAP_NORESERVE (address
 * space only: the kernel charges nothing for it, in any overcommit mode); the region is then mapped
 * MAP_FIXED inside it at an address aligned to its page size (huge page, or PMD for THP), and the ends of
 * the reservation not needed as guards are released. The guards therefore stay PROT_NONE: an access past
 * either end faults instead of reaching a neighbour.
 *
 * <p>Commit accounting: guest RAM is mapped MAP_NORESERVE by default ({@link #reserve}), as rust-vmm
 * vm-memory maps it, so a sparse guest much larger than RAM + swap can be mapped and only what it touches
 * costs memory; hugetlb stays reserved.
 */
public final class RegionBuilder {
    /** Larger than any user address space on x86-64 (128 TiB) or arm64 48-bit VA: certainly a mistake. */
    public static final long MAX_SIZE = 1L << 47;
    private static final int MAX_GUARD_PAGES = 1 << 16;

    private final Backing backing;
    private final long size;
    private HugePageSize hugePageSize;
    private int callerFd = -1;
    private long callerOffset;
    private int guardPages = 1;
    private Prefault.Mode prefault;
    private int prefaultThreads;
    private Lock lock = Lock.NONE;
    private boolean dontDump;
    private boolean mergeable;
    private Mempolicy.Mode numaMode;
    private BitSet numaNodes;
    private String name = "guestmem";
    private Boolean reserve; // null: the kind's default (reserves())

    private enum Lock { NONE, NOW, ON_FAULT }

    RegionBuilder(Backing backing, long size) {
        this.backing = backing;
        this.size = size;
    }

    RegionBuilder hugePageSize(HugePageSize s) {
        this.hugePageSize = Validate.notNull(s, "huge page size");
        return this;
    }

    RegionBuilder callerFd(int fd, long offset) {
        Validate.isTrue(fd >= 0, "fd must be a valid descriptor, got %d", fd);
        Validate.isTrue(offset >= 0 && offset % Posix.PAGE_SIZE == 0, "fd offset must be page aligned, got %d", offset);
        this.callerFd = fd;
        this.callerOffset = offset;
        return this;
    }

    /**
     * For {@link HostRegion#ofFd}: the caller's fd is a hugetlbfs file of {@code pageSize} pages, so the
     * mapping must be aligned to (and sized in) that page size (mmap refuses otherwise with EINVAL).
     */
    public RegionBuilder fdHugePages(HugePageSize pageSize) {
        Validate.isTrue(backing == Backing.FD || backing == Backing.GUEST_MEMFD,
                "huge pages of a caller's fd apply to ofFd regions, not %s", backing);
        return hugePageSize(pageSize);
    }

    /** Guard pages (base pages, PROT_NONE) on each side; default 1, 0 disables them. */
    public RegionBuilder guardPages(int pages) {
        Validate.inclusiveBetween(0, MAX_GUARD_PAGES, pages, "guard pages must be in [0, %d], got %d", MAX_GUARD_PAGES, pages);
        this.guardPages = pages;
        return this;
    }

    /** Fault every page in at creation (MADV_POPULATE_READ/WRITE), on several threads for large regions. */
    public RegionBuilder prefault(Prefault.Mode mode) {
        this.prefault = Validate.notNull(mode, "prefault mode");
        return this;
    }

    /** Threads for prefault (default: {@link Prefault#threadsFor}). */
    public RegionBuilder prefaultThreads(int threads) {
        Validate.isTrue(threads >= 1, "prefault threads must be >= 1, got %d", threads);
        this.prefaultThreads = threads;
        return this;
    }

    /** mlock the region at creation (populates it; counts in VmLck and against RLIMIT_MEMLOCK). */
    public RegionBuilder mlock() {
        this.lock = Lock.NOW;
        return this;
    }

    /** mlock2(MLOCK_ONFAULT): pages are locked as they are first touched. */
    public RegionBuilder mlockOnFault() {
        this.lock = Lock.ON_FAULT;
        return this;
    }

    /** MADV_DONTDUMP: keep this memory out of core dumps. */
    public RegionBuilder dontDump() {
        this.dontDump = true;
        return this;
    }

    /** MADV_MERGEABLE: let KSM merge identical pages. */
    public RegionBuilder mergeable() {
        this.mergeable = true;
        return this;
    }

    /** NUMA policy (mbind) applied before any page is faulted in. */
    public RegionBuilder numa(Mempolicy.Mode mode, BitSet nodes) {
        this.numaMode = Validate.notNull(mode, "numa mode");
        this.numaNodes = (BitSet) Validate.notNull(nodes, "numa nodes").clone();
        return this;
    }

    /**
     * Whether the kernel charges the whole region to its commit accounting when the region is mapped
     * ({@code true}: mmap without MAP_NORESERVE) or only as its pages are allocated ({@code false}:
     * MAP_NORESERVE); what QEMU's memory backends call {@code reserve=on|off}.
     *
     * <p>Default: {@code false} for the kinds of guest RAM ({@link Backing#noReserveByDefault()}), so that a
     * sparse guest far larger than RAM + swap maps, and only the pages it touches cost memory (running out
     * is then the OOM killer's business, not mmap's). {@code true} is for callers who want commit
     * accounting: a region that could not be backed fails here with ENOMEM instead of being killed later.
     * What the kernel charges, per kind:
     * <ul>
     * <li>{@link Backing#ANON}, {@link Backing#THP}: reserved, the whole size at mmap (the VMA is
     *   VM_ACCOUNT, smaps "ac"); vm.overcommit_memory=0 refuses one mapping larger than RAM + swap, =2 keeps
     *   the sum of charges under CommitLimit. No-reserve: VM_NORESERVE (smaps "nr"), never charged.</li>
     * <li>{@link Backing#ANON_SHARED}: reserved, the kernel's shmem object is charged in full at mmap (the
     *   same limits); no-reserve, it is charged page by page as shmem allocates.</li>
     * <li>{@link Backing#MEMFD}, {@link Backing#SECRET}, {@link Backing#GUEST_MEMFD}: only the VMA's flag
     *   changes. The kernel never charges a shared mapping of an existing file at mmap (shared anonymous
     *   memory is charged through the shmem object mmap creates for it); memfd_create makes its shmem file
     *   VM_NORESERVE itself, so memfd pages are charged as they are allocated either way; memfd_secret
     *   charges the whole size against RLIMIT_MEMLOCK at mmap either way (its pages are locked); guest_memfd
     *   charges nothing.</li>
     * <li>hugetlb ({@link Backing#isHugetlb()}, and a caller's fd of {@link #fdHugePages}): always reserved,
     *   so that a short pool fails at creation ({@link HugePagePoolExhaustedException}) rather than as a
     *   SIGBUS on a later fault, which would kill the JVM; {@code reserve(false)} is refused. The kernel
     *   honors MAP_NORESERVE for hugetlb in every overcommit mode, which is exactly why it is never passed.</li>
     * <li>{@link Backing#FD}: reserved by default (the file may be a hugetlbfs file); {@code false} allowed.</li>
     * <li>{@link Backing#PFNMAP}: no RAM to account; {@code reserve(false)} is refused.</li>
     * </ul>
     * Under vm.overcommit_memory=2 the kernel ignores MAP_NORESERVE for everything but hugetlb
     * ({@code do_mmap}): every region is then charged in full, and smaps shows no "nr".
     */
    public RegionBuilder reserve(boolean reserve) {
        this.reserve = reserve;
        return this;
    }

    /** Whether the region is mapped without MAP_NORESERVE: the explicit choice, else the kind's default. */
    private boolean reserves() {
        if (backing.isHugetlb() || hugePageSize != null) return true;
        return reserve != null ? reserve : !backing.noReserveByDefault();
    }

    /** The name of a memfd (shows in /proc/pid/maps and /proc/pid/fd as memfd:NAME). */
    public RegionBuilder name(String name) {
        this.name = Validate.notBlank(name, "memfd name");
        return this;
    }

    private long pageSize() {
        return hugePageSize != null ? hugePageSize.bytes() : Posix.PAGE_SIZE;
    }

    private long alignment() {
        if (hugePageSize != null) return hugePageSize.bytes();
        if (backing == Backing.THP) return Math.max(Posix.PAGE_SIZE, HugePagePools.thpSize());
        return Posix.PAGE_SIZE;
    }

    private void validate() {
        long page = pageSize();
        Validate.isTrue(size > 0, "region size must be positive, got %d", size);
        Validate.isTrue(size <= MAX_SIZE, "region size %s is absurd (more than %s)", Fmt.size(size), Fmt.size(MAX_SIZE));
        Validate.isTrue(size % page == 0, "region size %d (%s) is not a multiple of the %s page size of a %s region",
                size, Fmt.size(size), Fmt.size(page), backing);
        if (hugePageSize != null) {
            Validate.isTrue(HugePagePools.sizes().contains(hugePageSize), "this kernel has no hugetlb pool of %s pages (it has %s)",
                    hugePageSize, HugePagePools.sizes());
        }
        if (backing == Backing.PFNMAP) {
            Validate.isTrue(prefault == null && lock == Lock.NONE && numaMode == null && !mergeable,
                    "a pfnmap region has no struct pages: prefault, mlock, numa and mergeable do not apply");
        }
        if (backing == Backing.SECRET) {
            Validate.isTrue(numaMode == null && !mergeable, "memfd_secret memory takes no numa policy or KSM merging");
        }
        if (prefault != null && !reserves() && !backing.isHugetlb() && hugePageSize == null) {
            // A no-reserve mapping is not refused at mmap however large, so a prefault of more memory than the
            // machine has would end in the OOM killer, not in an error: refuse it here, before any step.
            io.guestmem.procfs.Overcommit oc = io.guestmem.procfs.Overcommit.now();
            long ram = oc.memTotal() + oc.swapTotal();
            Validate.isTrue(size <= ram, "a prefault of %s is more than this machine's RAM + swap (%s): it could only end "
                    + "in the OOM killer (a no-reserve mapping is not refused at mmap); prefault less, or none",
                    Fmt.size(size), Fmt.size(ram));
        }
        if (Boolean.FALSE.equals(reserve)) {
            Validate.isTrue(!backing.isHugetlb() && hugePageSize == null, "a %s region of %s pages is always reserved: "
                    + "with MAP_NORESERVE a short hugetlb pool would be a SIGBUS on a later fault instead of an error "
                    + "at creation", backing, hugePageSize);
            Validate.isTrue(backing != Backing.PFNMAP, "a pfnmap region has no RAM to account: reserve(false) does not apply");
        }
    }

    /** Creates the region, or throws having undone every step already taken. */
    public HostRegion create() {
        validate();
        long page = pageSize(), align = alignment(), guard = guardPages * Posix.PAGE_SIZE;
        Deque<Runnable> undo = new ArrayDeque<>();
        try {
            // 1. The fd the region maps, if any.
            int fd = -1;
            long fdOffset = 0;
            boolean ownsFd = true;
            switch (backing) {
                case MEMFD, MEMFD_HUGETLB -> {
                    int f = Memfd.create(name, backing == Backing.MEMFD_HUGETLB ? Memfd.hugetlbFlags(page) : 0);
                    undo.push(() -> HostRegion.closeQuietly(f));
                    Memfd.ftruncate(f, size);
                    fd = f;
                }
                case SECRET -> {
                    int f = Memfd.secret(0);
                    undo.push(() -> HostRegion.closeQuietly(f));
                    Memfd.ftruncate(f, size);
                    fd = f;
                }
                case PFNMAP -> {
                    int f = PerfEvent.openDummy();
                    undo.push(() -> HostRegion.closeQuietly(f));
                    fd = f;
                }
                case GUEST_MEMFD, FD -> {
                    fd = callerFd;
                    fdOffset = callerOffset;
                    ownsFd = false;
                }
                default -> { }
            }

            // 2. Reserve guard + aligned region + guard, PROT_NONE and unaccounted.
            long span = Math.addExact(Math.addExact(size, 2 * guard), align - Posix.PAGE_SIZE);
            long base = Mman.mmap(0, span, Mman.PROT_NONE,
                    Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS | Mman.MAP_NORESERVE, -1, 0);
            long addr = alignUp(base + guard, align);
            long spanStart = addr - guard, spanEnd = addr + size + guard;
            undo.push(() -> HostRegion.unmapQuietly(spanStart, spanEnd - spanStart));
            HostRegion.unmapQuietly(base, spanStart - base);            // slack before the guard
            HostRegion.unmapQuietly(spanEnd, base + span - spanEnd);    // slack after the guard

            // 3. The region itself, MAP_FIXED over the reservation.
            map(addr, fd, fdOffset);
            if (backing == Backing.PFNMAP) checkPfnmap(addr);

            // 4. Policy and advice, before any page is faulted in.
            if (numaMode != null) Mempolicy.mbind(addr, size, numaMode, numaNodes, 0);
            if (backing == Backing.THP) Mman.madvise(addr, size, Mman.MADV_HUGEPAGE);
            if (dontDump) Mman.madvise(addr, size, Mman.MADV_DONTDUMP);
            if (mergeable) Mman.madvise(addr, size, Mman.MADV_MERGEABLE);

            // 5. Lock (munmap would drop it too; the explicit undo keeps the order obvious).
            if (lock != Lock.NONE) {
                if (lock == Lock.NOW) Mman.mlock(addr, size);
                else Mman.mlock2(addr, size, Mman.MLOCK_ONFAULT);
                undo.push(() -> {
                    try {
                        Mman.munlock(addr, size);
                    } catch (RuntimeException ignored) {
                        // the unmap that follows releases the lock anyway
                    }
                });
            }

            // 6. Prefault.
            if (prefault != null) {
                if (backing == Backing.SECRET) {
                    // secretmem refuses GUP, so MADV_POPULATE_* fails with EFAULT: touch the pages instead.
                    Prefault.touch(MemorySegment.ofAddress(addr).reinterpret(size), page, prefault);
                } else {
                    int threads = prefaultThreads > 0 ? prefaultThreads : Prefault.threadsFor(size);
                    Prefault.populate(addr, size, page, prefault, threads);
                }
            }

            int ownedFd = ownsFd ? fd : -1;
            Runnable cleanup = () -> {
                HostRegion.unmapQuietly(spanStart, spanEnd - spanStart);
                HostRegion.closeQuietly(ownedFd);
            };
            boolean shareable = switch (backing) {
                case MEMFD, MEMFD_HUGETLB, GUEST_MEMFD, FD -> true;
                default -> false;
            };
            return new HostRegion(backing, addr, size, page, guard, fd, fdOffset, shareable, reserves(), cleanup);
        } catch (RuntimeException | Error e) {
            while (!undo.isEmpty()) undo.pop().run();
            throw e;
        }
    }

    /** The ring must really be VM_PFNMAP (6.12 maps it with struct pages): the kernel's smaps VmFlags say. */
    private static void checkPfnmap(long addr) {
        io.guestmem.procfs.Vma vma = io.guestmem.procfs.Smaps.vmaOf(addr);
        if (vma == null || !vma.pfnMap())
            throw new PfnmapUnavailableException("this kernel maps a perf ring buffer without VM_PFNMAP (smaps VmFlags: "
                    + (vma == null ? "no vma" : String.join(" ", vma.vmFlagCodes())) + "), and no other PFNMAP mapping can "
                    + "back a region of a chosen size", null);
    }

    /** mmap MAP_FIXED of the region's kind at {@code addr}; a short hugetlb pool becomes a clear error. */
    private void map(long addr, int fd, long fdOffset) {
        // A perf ring is mapped read-only ("overwrite" mode): its data pages are never writable by users.
        int rw = backing == Backing.PFNMAP ? Mman.PROT_READ : Mman.PROT_READ | Mman.PROT_WRITE;
        int flags = Mman.MAP_FIXED | (reserves() ? 0 : Mman.MAP_NORESERVE);
        int mapFd = -1;
        long off = 0;
        switch (backing) {
            case ANON, THP -> flags |= Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS;
            case ANON_SHARED -> flags |= Mman.MAP_SHARED | Mman.MAP_ANONYMOUS;
            // Always reserved (reserves()): a short pool fails here, not as a SIGBUS on a later fault.
            case HUGETLB_2M, HUGETLB_1G, HUGETLB_OTHER -> flags |= Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS | Mman.MAP_HUGETLB
                    | (Long.numberOfTrailingZeros(hugePageSize.bytes()) << Mman.MAP_HUGE_SHIFT);
            default -> {
                flags |= Mman.MAP_SHARED;
                mapFd = fd;
                off = fdOffset;
            }
        }
        try {
            Mman.mmap(addr, size, rw, flags, mapFd, off);
        } catch (SyscallException e) {
            if (backing.isHugetlb() && e.is(Errno.ENOMEM)) {
                long asked = size / hugePageSize.bytes();
                HugePagePools.Pool pool = HugePagePools.pool(hugePageSize);
                throw new HugePagePoolExhaustedException(e.call(), hugePageSize, asked, pool.available(),
                        HugePagePools.howToReserve(hugePageSize, Math.max(1, asked - pool.available())));
            }
            throw e;
        }
    }

    private static long alignUp(long v, long align) {
        return (v + align - 1) & -align;
    }
}
