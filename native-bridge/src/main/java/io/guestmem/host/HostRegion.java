package io.guestmem.host;

import io.guestmem.sys.Fmt;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.UseAfterClose;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.OptionalInt;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A range of real host memory mapped into this process: the memory a guest's RAM lives in.
 *
 * <p>Create one through the factories ({@link #anonymous}, {@link #hugetlb}, {@link #memfd}, ...), which
 * return a {@link RegionBuilder} for the options (prefault, mlock, guard pages, NUMA policy, DONTDUMP,
 * MERGEABLE, commit reservation). A failed creation leaves nothing behind: no mapping, lock or fd.
 *
 * <p>{@link #segment()} is bound to a shared {@link Arena}: {@link #close()} closes the arena, whose
 * cleanup unmaps the whole span (guards included) exactly once and closes the fds the region owns; any
 * later access through the segment, from any thread, throws {@link IllegalStateException} instead of
 * touching unmapped memory. Thread-safe.
 */
public final class HostRegion implements AutoCloseable {
    private final Backing backing;
    private final long address;
    private final long size;
    private final long pageSize;
    private final long guardBytes;
    private final int fd;          // -1 when the region has no fd
    private final long fdOffset;
    private final boolean shareable;
    private final boolean reserved;
    private final Arena arena;
    private final MemorySegment segment;
    private final AtomicBoolean closed = new AtomicBoolean();
    /** Serializes close(): the guards' wait may take a while, and a second close must not overtake it. */
    private final Object closeLock = new Object();
    // Guarded by views: what must agree, and what must be closed, before the memory is unmapped.
    private final List<CloseGuard> closeGuards = new ArrayList<>();
    private final List<Runnable> closeHooks = new ArrayList<>();
    private final Set<RegionView> views = new LinkedHashSet<>();

    /**
     * A user of the region's memory that may refuse to let it be unmapped yet: a guest memory whose channel
     * transfers have the memory inside an I/O call, which a close cannot interrupt (the JDK keeps the memory's
     * session acquired for the whole system call). Asked by {@link #close()} before anything else happens.
     */
    public interface CloseGuard {
        /**
         * The region is about to close. May wait (bounded) for its own users to let go; throwing refuses the
         * close: the guards that already agreed get {@link #closeAborted}, the region stays open and mapped,
         * and the exception reaches close()'s caller unchanged.
         */
        void beforeClose(HostRegion region);

        /** A close this guard agreed to was refused by a later guard: undo what beforeClose did. */
        default void closeAborted(HostRegion region) {}
    }

    HostRegion(Backing backing, long address, long size, long pageSize, long guardBytes, int fd, long fdOffset,
               boolean shareable, boolean reserved, Runnable cleanup) {
        this.backing = backing;
        this.address = address;
        this.size = size;
        this.pageSize = pageSize;
        this.guardBytes = guardBytes;
        this.fd = fd;
        this.fdOffset = fdOffset;
        this.shareable = shareable;
        this.reserved = reserved;
        this.arena = Arena.ofShared();
        MemorySegment seg = MemorySegment.ofAddress(address).reinterpret(size, arena, ignored -> cleanup.run());
        // The kernel maps a perf ring's data pages read-only: a write would fault, so Java may only read.
        this.segment = backing == Backing.PFNMAP ? seg.asReadOnly() : seg;
    }

    // ---- factories: one per kind of backing ----

    /** Private anonymous memory of base pages; no-reserve unless {@link RegionBuilder#reserve reserve(true)}. */
    public static RegionBuilder anonymous(long size) {
        return new RegionBuilder(Backing.ANON, size);
    }

    /** Shared anonymous memory (shmem): survives fork as shared, can be MADV_REMOVEd; no-reserve by default. */
    public static RegionBuilder anonymousShared(long size) {
        return new RegionBuilder(Backing.ANON_SHARED, size);
    }

    /**
     * Private anonymous memory, PMD-aligned and advised MADV_HUGEPAGE so the kernel can back it with THPs;
     * no-reserve by default.
     */
    public static RegionBuilder thp(long size) {
        return new RegionBuilder(Backing.THP, size);
    }

    /** hugetlb pages of {@code pageSize}, always reserved at creation (fails then if the pool is short). */
    public static RegionBuilder hugetlb(long size, HugePageSize pageSize) {
        return new RegionBuilder(Backing.hugetlb(pageSize), size).hugePageSize(pageSize);
    }

    /** A memfd (shmem file) mapped MAP_SHARED, no-reserve by default; shareable with another process by its fd. */
    public static RegionBuilder memfd(long size) {
        return new RegionBuilder(Backing.MEMFD, size);
    }

    /** A hugetlbfs memfd of {@code pageSize}, always reserved at creation; shareable by fd. */
    public static RegionBuilder memfdHugetlb(long size, HugePageSize pageSize) {
        return new RegionBuilder(Backing.MEMFD_HUGETLB, size).hugePageSize(pageSize);
    }

    /** memfd_secret memory: absent from the kernel's direct map. */
    public static RegionBuilder secret(long size) {
        return new RegionBuilder(Backing.SECRET, size);
    }

    /**
     * A MAP_SHARED mapping of a caller's fd (a guest_memfd, a file) at {@code offset}. The caller keeps
     * ownership of the fd: closing the region unmaps but does not close it. A guest_memfd must have been
     * created with INIT_SHARED before it is touched from Java (otherwise host access raises SIGBUS).
     */
    public static RegionBuilder ofFd(int fd, long offset, long size, Backing kind) {
        if (kind != Backing.GUEST_MEMFD && kind != Backing.FD)
            throw new IllegalArgumentException("a caller's fd maps as " + Backing.GUEST_MEMFD + " or " + Backing.FD + ", not " + kind);
        return new RegionBuilder(kind, size).callerFd(fd, offset);
    }

    /**
     * The ring buffer of a perf software event (1 + {@code dataPages} pages): a real VM_PFNMAP | VM_IO
     * range, the kind of memory (device BARs) that has no struct page and that KVM must not refcount.
     */
    public static RegionBuilder perfRing(int dataPages) {
        return new RegionBuilder(Backing.PFNMAP, io.guestmem.sys.PerfEvent.ringSize(dataPages));
    }

    // ---- accessors ----

    public Backing backing() {
        return backing;
    }

    /** The first byte of the region (guard pages are outside it). */
    public long address() {
        return address;
    }

    public long size() {
        return size;
    }

    /**
     * The page size of this region: the huge page size for hugetlb kinds, else the base page size (THP
     * regions are made of base pages the kernel may collapse; pagemap/kpageflags tell which are huge).
     */
    public long pageSize() {
        return pageSize;
    }

    /** Bytes of PROT_NONE guard directly before and after the region (0 when disabled). */
    public long guardBytes() {
        return guardBytes;
    }

    /**
     * The fd another process can map to see this memory (memfd, hugetlb memfd, guest_memfd, caller fd),
     * at {@link #fdOffset()}; empty for kinds without one.
     */
    public OptionalInt fd() {
        checkOpen("fd()");
        return shareable ? OptionalInt.of(fd) : OptionalInt.empty();
    }

    /**
     * Whether the region was mapped reserved (without MAP_NORESERVE, see {@link RegionBuilder#reserve}). What
     * was asked: under vm.overcommit_memory=2 the kernel charges a no-reserve region in full all the same
     * (its smaps VmFlags then lack "nr").
     */
    public boolean reserved() {
        return reserved;
    }

    /** The file offset the region starts at in {@link #fd()}. */
    public long fdOffset() {
        return fdOffset;
    }

    /**
     * The memory, bound to this region's lifetime: access after {@link #close()} throws
     * IllegalStateException. Read-only for {@link Backing#PFNMAP} (writes throw IllegalArgumentException).
     */
    public MemorySegment segment() {
        checkOpen("segment()");
        return segment;
    }

    /** Whether {@code [addr, addr+len)} lies inside the region. */
    public boolean contains(long addr, long len) {
        return len >= 0 && addr >= address && addr + len <= address + size && addr + len >= addr;
    }

    public boolean isOpen() {
        return !closed.get();
    }

    private void checkOpen(String call) {
        if (closed.get()) throw UseAfterClose.of("host region " + this, call);
    }

    /**
     * A view of {@code [offset, offset + size)} of this region with its own lifetime: its segment throws
     * IllegalStateException after {@link RegionView#close()} or after this region closes, whichever comes
     * first (the region closes its open views before it unmaps). What a memslot user needs for a per-slot
     * window that dies when the slot is deleted or moved, while the memory stays mapped.
     */
    public RegionView view(long offset, long size) {
        if (offset < 0 || size <= 0 || offset > this.size - size)
            throw new IndexOutOfBoundsException("view " + Fmt.hex(offset) + "+" + Fmt.hex(size) + " outside " + this);
        synchronized (views) {
            checkOpen("view()");
            RegionView v = new RegionView(this, offset, size, address + offset, backing == Backing.PFNMAP);
            views.add(v);
            return v;
        }
    }

    void viewClosed(RegionView v) {
        synchronized (views) {
            views.remove(v);
        }
    }

    /**
     * Makes {@code guard} a party to every {@link #close()} of this region until it is removed or the region
     * has closed (on a closed region: nothing to guard, ignored). Guards are asked in registration order.
     */
    public void addCloseGuard(CloseGuard guard) {
        synchronized (views) {
            if (!closed.get() && !closeGuards.contains(guard)) closeGuards.add(guard);
        }
    }

    public void removeCloseGuard(CloseGuard guard) {
        synchronized (views) {
            closeGuards.remove(guard);
        }
    }

    /**
     * Runs {@code hook} when this region starts closing, once every {@link CloseGuard} agreed, before its
     * views are closed and its memory is unmapped (on a closed region: now). Hooks run once, in registration order, on the closing thread; an
     * exception from a hook is ignored, since the unmap must happen anyway.
     */
    public void onClose(Runnable hook) {
        synchronized (views) {
            if (!closed.get()) {
                closeHooks.add(hook);
                return;
            }
        }
        hook.run();
    }

    /**
     * Unmaps the region and its guards and closes owned fds, exactly once; later calls do nothing. First every
     * {@link CloseGuard} is asked: one that refuses (a guest memory whose transfers did not end within its
     * drain timeout) makes this throw its exception, and the region stays open, mapped and guarded. Then the
     * {@link #onClose} hooks run and the open {@link #view}s are closed. If some thread still holds the memory
     * nonetheless (an I/O call of the caller's own on a buffer over a view or the segment has its session
     * acquired), the IllegalStateException of that session reaches the caller and the memory stays mapped:
     * never unmapped under an I/O call; a later close() tries again (the hooks have run by then).
     * Concurrent calls serialize.
     */
    @Override
    public void close() {
        synchronized (closeLock) {
            if (closed.get()) return;
            List<CloseGuard> guards;
            synchronized (views) {
                guards = List.copyOf(closeGuards);
            }
            int agreed = 0;
            try {
                for (CloseGuard g : guards) {
                    g.beforeClose(this);
                    agreed++;
                }
            } catch (RuntimeException | Error refusal) {
                for (int i = agreed - 1; i >= 0; i--) {
                    try {
                        guards.get(i).closeAborted(this);
                    } catch (RuntimeException e) {
                        refusal.addSuppressed(e);
                    }
                }
                throw refusal;
            }
            closed.set(true);
            List<Runnable> hooks;
            List<RegionView> open;
            synchronized (views) {
                hooks = List.copyOf(closeHooks);
                closeHooks.clear();
                open = List.copyOf(views);
            }
            for (Runnable h : hooks) {
                try {
                    h.run();
                } catch (RuntimeException ignored) {
                    // a user's hook must not keep the memory mapped
                }
            }
            try {
                for (RegionView v : open) v.close();
                arena.close();
            } catch (IllegalStateException busy) {
                closed.set(false); // still mapped and usable; never unmap under an in-flight access
                throw busy;
            }
            synchronized (views) {
                closeGuards.clear();
            }
        }
    }

    @Override
    public String toString() {
        return backing + " " + Fmt.hex(address) + "+" + Fmt.size(size) + " (pages of " + Fmt.size(pageSize) + ")";
    }

    /** Unmaps a span quietly: used on cleanup paths, where a second exception would hide the first. */
    static void unmapQuietly(long addr, long len) {
        try {
            if (len > 0) Mman.munmap(addr, len);
        } catch (RuntimeException ignored) {
            // munmap of a range we mapped can only fail if someone else unmapped it already
        }
    }

    static void closeQuietly(int fd) {
        try {
            if (fd >= 0) Posix.close(fd);
        } catch (RuntimeException ignored) {
            // EBADF: already closed; nothing else to do on a cleanup path
        }
    }
}
