package io.guestmem.gmem;

import io.guestmem.mmu.GuestMemfdResolution;
import io.guestmem.mmu.Mappability;
import io.guestmem.KvmException;
import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.kvm.KvmGuestMemfd;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvmapi.KvmIoctls;
import io.guestmem.memslot.Memslot;
import io.guestmem.mmu.Invalidation;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A guest_memfd (or, where KVM cannot give one, a memfd standing in: see {@link #backing()}), its MAP_SHARED
 * host mapping, and the syscalls around its pages' shared/private state machine ({@link PageStates}: the
 * per-page {@link Mappability} with the deferred final put of the guest_memfd mappability series, "KVM:
 * guest_memfd: Handle final folio_put() of guestmem pages", Fuad Tabba, RFC PATCH v5 06/15, 2025,
 * <a href="https://lore.kernel.org/all/?q=s%3A%22Handle+final+folio_put%28%29+of+guestmem+pages%22">lore</a>).
 * Upstream dropped that series' final-put callback and in-place conversion ({@code KVM_SET_MEMORY_ATTRIBUTES2})
 * has not merged, so the state machine lives in the library, over the real guest_memfd; where the later series settled a
 * question it is followed (a conversion blocked by a host mapping fails with {@code EAGAIN} and the offset of
 * the first such page).
 *
 * <p>What this class adds to the states: conversions are serialized per region by a lock (so a range is checked
 * and converted by one caller at a time) and run inside the notifier's invalidation; the host-mapping check
 * before a conversion to private reads pagemap; the zaps and hole punches are the syscalls.
 *
 * <h2>Host access</h2>
 * Java never touches a page that is not {@code ALL}: the accessors ({@link #getLong}, {@link #read}, ...) take a
 * shared reference for the duration of the copy, so a page cannot turn private under them, and a page that is
 * not {@code ALL} is refused with {@link HostAccessRefusedException}. Converting to private zaps the host
 * mapping of the range (MADV_DONTNEED on the shared mapping: the contents stay in the file, the page-table
 * entries go; pagemap shows the pages not present) and the final put of a deferred conversion zaps that page
 * again, since an accessor that held the reference may have faulted it in meanwhile. A guest_memfd created
 * without INIT_SHARED is never mapped: any host touch would raise SIGBUS and kill the JVM.
 *
 * <p>Host mappings other than the library's own (a caller's mmap of {@link #fd()}) are invisible to it.
 */
public final class GuestMemfdRegion implements AutoCloseable {
    private final GuestMemfdBacking backing;
    private final KvmGuestMemfd gmem;         // null for the stand-in
    private final int fd;
    private final long size;
    private final long pageSize;
    private final int shift;
    private final HostRegion mapping;         // null when the host may not map it
    private final MemorySegment segment;      // the mapping's segment (closes with it), or null
    private final Pagemap pagemap;            // null when there is no mapping
    private final PageStates states;
    private final Object conversionLock = new Object();
    private final CopyOnWriteArrayList<FinalPutListener> listeners = new CopyOnWriteArrayList<>();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final MmuNotifier notifier;       // null: behind no memslot set, nothing to invalidate

    private GuestMemfdRegion(GuestMemfdBacking backing, KvmGuestMemfd gmem, int fd, long size, HostRegion mapping,
                             MmuNotifier notifier) {
        this.backing = backing;
        this.notifier = notifier;
        this.gmem = gmem;
        this.fd = fd;
        this.size = size;
        this.pageSize = Posix.PAGE_SIZE;
        this.shift = Long.numberOfTrailingZeros(pageSize);
        this.mapping = mapping;
        this.segment = mapping == null ? null : mapping.segment();
        this.pagemap = mapping == null ? null : Pagemap.openSelf();
        // INIT_SHARED (and the stand-in) start shared; without it every page is private to the guest.
        Mappability initial = backing == GuestMemfdBacking.GUEST_MEMFD_GUEST_ONLY ? Mappability.GUEST : Mappability.ALL;
        this.states = new PageStates(size >>> shift, shift, initial, this::finishConversion);
    }

    // ------------------------------------------------------------------ creation

    /**
     * A guest_memfd of {@code size} bytes for {@code vm}: with MMAP|INIT_SHARED and mapped MAP_SHARED when KVM
     * reports both flags ({@link GuestMemfdBacking#GUEST_MEMFD}); with no flags and no host mapping when it
     * offers guest_memfd without them ({@link GuestMemfdBacking#GUEST_MEMFD_GUEST_ONLY}); and a memfd
     * standing in when {@code vm} is null or has no KVM_CAP_GUEST_MEMFD. KVM refuses a size that is not
     * page-aligned ({@code EINVAL} from KVM_CREATE_GUEST_MEMFD); the stand-in refuses it the same way.
     * The region is behind no notifier: used alone, its conversions have no translations to invalidate;
     * one that joins a VM's memslots is made with {@link #create(KvmVm, long, MmuNotifier)}.
     */
    public static GuestMemfdRegion create(KvmVm vm, long size) {
        return create(vm, size, null);
    }

    /**
     * {@link #create(KvmVm, long)} behind {@code notifier}: conversions, hole punches and zaps run inside an
     * invalidation of it covering the host mapping's range (and so the gfns of any slot whose userspace_addr
     * is that mapping), so translations cached from the old view die, as KVM zaps SPTEs and invalidates
     * gfn_to_pfn caches. The notifier is fixed here, for the region's life: a region that joins a VM's
     * memslots must be created behind that VM's notifier ({@code VmMemory} refuses any other).
     */
    public static GuestMemfdRegion create(KvmVm vm, long size, MmuNotifier notifier) {
        if (vm == null || !vm.capabilities().guestMemfd()) return standIn(size, notifier);
        long both = KvmIoctls.GUEST_MEMFD_FLAG_MMAP | KvmIoctls.GUEST_MEMFD_FLAG_INIT_SHARED;
        KvmGuestMemfd g = vm.createGuestMemfd(size, vm.capabilities().guestMemfdMmapShared() ? both : 0);
        try {
            return adopt(g, notifier);
        } catch (RuntimeException | Error e) {
            g.close();
            throw e;
        }
    }

    /**
     * Wraps a guest_memfd the caller created; the region owns it from now on (closing the region closes it).
     * It is mapped only if it was created with MMAP|INIT_SHARED.
     */
    public static GuestMemfdRegion adopt(KvmGuestMemfd g) {
        return adopt(g, null);
    }

    /** {@link #adopt(KvmGuestMemfd)} behind {@code notifier} (see {@link #create(KvmVm, long, MmuNotifier)}). */
    public static GuestMemfdRegion adopt(KvmGuestMemfd g, MmuNotifier notifier) {
        if (!g.mmapShared())
            return new GuestMemfdRegion(GuestMemfdBacking.GUEST_MEMFD_GUEST_ONLY, g, g.fd(), g.size(), null, notifier);
        HostRegion m = HostRegion.ofFd(g.fd(), 0, g.size(), Backing.GUEST_MEMFD).create();
        try {
            return new GuestMemfdRegion(GuestMemfdBacking.GUEST_MEMFD, g, g.fd(), g.size(), m, notifier);
        } catch (RuntimeException | Error e) {
            m.close();
            throw e;
        }
    }

    /** A memfd standing in for a guest_memfd ({@link GuestMemfdBacking#MEMFD_STAND_IN}), mapped MAP_SHARED. */
    public static GuestMemfdRegion standIn(long size) {
        return standIn(size, null);
    }

    /** {@link #standIn(long)} behind {@code notifier} (see {@link #create(KvmVm, long, MmuNotifier)}). */
    public static GuestMemfdRegion standIn(long size, MmuNotifier notifier) {
        if (size <= 0 || size % Posix.PAGE_SIZE != 0)
            throw new KvmException(Errno.EINVAL, "guest_memfd stand-in(" + size + ")",
                    "size must be a positive multiple of the page size " + Fmt.size(Posix.PAGE_SIZE)
                            + ", as KVM_CREATE_GUEST_MEMFD requires");
        HostRegion m = HostRegion.memfd(size).name("guestmem-gmem-stand-in").create();
        try {
            return new GuestMemfdRegion(GuestMemfdBacking.MEMFD_STAND_IN, null, m.fd().getAsInt(), size, m, notifier);
        } catch (RuntimeException | Error e) {
            m.close();
            throw e;
        }
    }

    // ------------------------------------------------------------------ facts

    public GuestMemfdBacking backing() {
        return backing;
    }

    /** The guest_memfd (or stand-in memfd) descriptor. */
    public int fd() {
        checkOpen();
        return fd;
    }

    public long size() {
        return size;
    }

    public long pageSize() {
        return pageSize;
    }

    public long pages() {
        return states.pages();
    }

    /**
     * The state machine of this region's pages (by page index): their mappability, the references the library
     * holds and the final put. Reference operations on it need no syscall; conversions go through
     * {@link #toPrivate} / {@link #toShared}, which add the syscalls.
     */
    public PageStates pageStates() {
        return states;
    }

    /** The KVM guest_memfd, or null for the stand-in. */
    public KvmGuestMemfd guestMemfd() {
        return gmem;
    }

    /** Whether the library maps this region for the host (false for a guest_memfd without INIT_SHARED). */
    public boolean hostMapped() {
        return mapping != null;
    }

    /**
     * The address of the host mapping: use it as the memslot's userspace_addr (KVM's instruction emulator reads
     * guest memory through it). Touching it directly bypasses the mappability checks: use the accessors.
     */
    public long hostAddress() {
        checkOpen();
        if (mapping == null) throw noMapping("hostAddress", 0);
        return mapping.address();
    }

    /**
     * The host mapping as a {@link HostRegion} (for {@code GuestMemory.register}, whose accesses then ask
     * {@link GuestMemfdPages#mayAccess}), or null when there is none.
     */
    public HostRegion hostRegion() {
        checkOpen();
        return mapping;
    }

    /**
     * The memslot binding this region at {@code gpa}: a {@link Memslot#GUEST_MEMFD} slot over the guest_memfd
     * with the host mapping as userspace_addr (0 when there is none). A stand-in memfd is no guest_memfd (KVM
     * refuses it as one with EINVAL), so its slot is a plain slot over the host mapping.
     */
    public Memslot memslot(int addressSpace, int id, long gpa) {
        checkOpen();
        if (gpa % pageSize != 0) throw new IllegalArgumentException("gpa " + Fmt.hex(gpa) + " is not page-aligned");
        long hva = mapping == null ? 0 : mapping.address();
        if (backing == GuestMemfdBacking.MEMFD_STAND_IN)
            return new Memslot(addressSpace, id, gpa >>> shift, pages(), hva, 0, -1, 0);
        return new Memslot(addressSpace, id, gpa >>> shift, pages(), hva, Memslot.GUEST_MEMFD, fd, 0);
    }

    /** The notifier this region invalidates through, fixed at creation; null when it has none. */
    public MmuNotifier notifier() {
        return notifier;
    }

    public void addFinalPutListener(FinalPutListener l) {
        listeners.add(l);
    }

    public void removeFinalPutListener(FinalPutListener l) {
        listeners.remove(l);
    }

    // ------------------------------------------------------------------ state queries (by offset, allocation-free)

    /** The mappability of the page holding {@code offset}. */
    public Mappability mappability(long offset) {
        return states.mappability(page(offset));
    }

    /** The target of the pending conversion of the {@link Mappability#NONE} page holding {@code offset}, else null. */
    public Mappability pendingTarget(long offset) {
        return states.pendingTarget(page(offset));
    }

    /** How many references the library holds on the page holding {@code offset}. */
    public long references(long offset) {
        return states.references(page(offset));
    }

    // ------------------------------------------------------------------ conversions

    /**
     * Makes {@code [offset, offset+length)} private. Refused with {@link ConversionException} ({@code EAGAIN},
     * {@link ConversionException#errorOffset()} = the first such page) if the host mapping still maps a page of
     * the range (pagemap present): unmap first with {@link #zapHostMapping}. Otherwise each page with no library
     * reference becomes {@code GUEST} at once, each page with references becomes {@code NONE} and turns
     * {@code GUEST} at its final put, and a page waiting to become shared is turned back to private at once
     * (its references are private ones). The whole range is then zapped from the host mapping again (a fault
     * that raced the pagemap check dies), all inside the notifier's invalidation.
     */
    public Conversion toPrivate(long offset, long length) {
        String op = "toPrivate(" + Fmt.hex(offset) + ", " + Fmt.size(length) + ")";
        checkOpen();
        checkRange(op, offset, length);
        synchronized (conversionLock) {
            if (mapping != null) {
                long first = firstHostMapped(offset, length);
                if (first >= 0)
                    throw new ConversionException(Errno.EAGAIN, op, first, "the host mapping still maps offset "
                            + Fmt.hex(first) + " (pagemap present at " + Fmt.hex(mapping.address() + first)
                            + "): unmap it first (zapHostMapping)");
            }
            try (Invalidation inv = invalidation(offset, length)) {
                Conversion c = states.convert(offset, length, Mappability.GUEST);
                if (mapping != null) Mman.madvise(mapping.address() + offset, length, Mman.MADV_DONTNEED);
                return c;
            }
        }
    }

    /**
     * Makes {@code [offset, offset+length)} shared: each page with no library reference becomes {@code ALL} at
     * once, each with private references becomes {@code NONE} and turns {@code ALL} at its final put, and a page
     * waiting to become private turns back to shared at once (its references are shared ones). Refused
     * ({@code EINVAL}) for a guest_memfd without INIT_SHARED, which has no shared view.
     */
    public Conversion toShared(long offset, long length) {
        String op = "toShared(" + Fmt.hex(offset) + ", " + Fmt.size(length) + ")";
        checkOpen();
        checkRange(op, offset, length);
        if (mapping == null)
            throw new KvmException(Errno.EINVAL, op, "this guest_memfd was created without MMAP|INIT_SHARED: it has no shared view");
        synchronized (conversionLock) {
            try (Invalidation inv = invalidation(offset, length)) {
                return states.convert(offset, length, Mappability.ALL);
            }
        }
    }

    /** The final put of a deferred conversion ({@link PageStates.FinalPut}): the zap, then the listeners. */
    private void finishConversion(long page, Mappability now) {
        long off = page << shift;
        if (now == Mappability.GUEST && mapping != null && !closed.get()) {
            // The reference holder may have faulted the page in through the mapping after toPrivate zapped
            // it. No notifier here: every translation of the page already died when it went NONE, and this
            // runs on whatever thread releases (possibly inside a notifier listener).
            Mman.madviseRaw(mapping.address() + off, pageSize, Mman.MADV_DONTNEED);
        }
        for (FinalPutListener l : listeners) {
            try {
                l.conversionCompleted(this, off, now);
            } catch (RuntimeException ignored) {
                // a listener must not throw; the conversion is done regardless
            }
        }
    }

    // ------------------------------------------------------------------ host mapping

    /**
     * Zaps the host mapping of {@code [offset, offset+length)} (MADV_DONTNEED on the shared mapping, inside the
     * notifier's invalidation): the contents stay in the file, pagemap shows the pages not present, and the next
     * host touch would fault them back in. Nothing to do without a host mapping.
     */
    public void zapHostMapping(long offset, long length) {
        String op = "zapHostMapping(" + Fmt.hex(offset) + ", " + Fmt.size(length) + ")";
        checkOpen();
        checkRange(op, offset, length);
        if (mapping == null) return;
        try (Invalidation inv = invalidation(offset, length)) {
            Mman.madvise(mapping.address() + offset, length, Mman.MADV_DONTNEED);
        }
    }

    /**
     * The offset of the first page of the range the host mapping maps (pagemap present), -1 if none or if
     * there is no host mapping. One pagemap read for the range.
     */
    public long firstHostMapped(long offset, long length) {
        checkOpen();
        checkRange("firstHostMapped", offset, length);
        if (mapping == null) return -1;
        int n = (int) (length >>> shift);
        long[] raw = pagemap.read(mapping.address() + offset, n);
        for (int k = 0; k < n; k++) if (PagemapEntry.isPresent(raw[k])) return offset + ((long) k << shift);
        return -1;
    }

    /** The pagemap entry of the host mapping at {@code offset} (the kernel's view), or null without a mapping. */
    public PagemapEntry hostPagemapEntry(long offset) {
        checkOpen();
        checkRange("hostPagemapEntry", offset & -pageSize, pageSize);
        return mapping == null ? null : pagemap.entry(mapping.address() + (offset & -pageSize));
    }

    /**
     * {@code kvm_gmem_get_pfn()}'s lookup of the page holding {@code offset} for a guest (FOLL_GUEST) access, from
     * userspace and without any host page table entry: first whether the page cache holds its folio, uptodate
     * (mincore on the host mapping: for a shared file mapping it reports page-cache residency where no pte maps
     * the page, and never faults; it counts uptodate folios only, see {@link GuestMemfdResolution.Residency};
     * not asked without a mapping), then fallocate(KEEP_SIZE) of the page, which allocates
     * the folio if it is absent ({@code kvm_gmem_allocate}; shmem's fallocate for the stand-in) and leaves a
     * present one alone. Nothing is mapped: pagemap of the host mapping is as it was. The pfn stays unread (no
     * reader sees one without a host pte).
     *
     * @throws io.guestmem.sys.SyscallException from fallocate or mincore (e.g. ENOSPC, ENOMEM)
     */
    public GuestMemfdResolution resolveForGuest(long offset) {
        checkOpen();
        checkRange("resolveForGuest", offset & -pageSize, pageSize);
        long page = offset & -pageSize;
        GuestMemfdResolution.Residency before = mapping == null
                ? GuestMemfdResolution.Residency.UNKNOWN
                : Mman.residentPages(mapping.address() + page, pageSize) != 0
                        ? GuestMemfdResolution.Residency.RESIDENT
                        : GuestMemfdResolution.Residency.NOT_RESIDENT;
        if (gmem != null) gmem.allocate(page, pageSize);
        else Memfd.fallocate(fd, Memfd.FALLOC_FL_KEEP_SIZE, page, pageSize);
        return new GuestMemfdResolution(fd, page, before);
    }

    /**
     * fallocate(PUNCH_HOLE|KEEP_SIZE) over {@code [offset, offset+length)} inside the notifier's invalidation:
     * the pages are freed and read back as zeros, for the host and the guest.
     */
    public void punchHole(long offset, long length) {
        String op = "punchHole(" + Fmt.hex(offset) + ", " + Fmt.size(length) + ")";
        checkOpen();
        checkRange(op, offset, length);
        try (Invalidation inv = invalidation(offset, length)) {
            if (gmem != null) gmem.punchHole(offset, length);
            else Memfd.punchHole(fd, offset, length);
        }
    }

    // ------------------------------------------------------------------ host accessors

    public byte getByte(long offset) {
        hostGet("getByte", offset, 1);
        try {
            return segment.get(ValueLayout.JAVA_BYTE, offset);
        } finally {
            hostPut(offset, 1);
        }
    }

    public void putByte(long offset, byte v) {
        hostGet("putByte", offset, 1);
        try {
            segment.set(ValueLayout.JAVA_BYTE, offset, v);
        } finally {
            hostPut(offset, 1);
        }
    }

    public long getLong(long offset) {
        hostGet("getLong", offset, 8);
        try {
            return segment.get(ValueLayout.JAVA_LONG_UNALIGNED, offset);
        } finally {
            hostPut(offset, 8);
        }
    }

    public void putLong(long offset, long v) {
        hostGet("putLong", offset, 8);
        try {
            segment.set(ValueLayout.JAVA_LONG_UNALIGNED, offset, v);
        } finally {
            hostPut(offset, 8);
        }
    }

    public void read(long offset, byte[] dst, int dstOff, int len) {
        hostGet("read", offset, len);
        try {
            MemorySegment.copy(segment, ValueLayout.JAVA_BYTE, offset, dst, dstOff, len);
        } finally {
            hostPut(offset, len);
        }
    }

    public void write(long offset, byte[] src, int srcOff, int len) {
        hostGet("write", offset, len);
        try {
            MemorySegment.copy(src, srcOff, segment, ValueLayout.JAVA_BYTE, offset, len);
        } finally {
            hostPut(offset, len);
        }
    }

    /** Takes shared references on every page of the access, or none and throws. */
    private void hostGet(String what, long offset, long len) {
        checkOpen();
        if (offset < 0 || len < 0 || offset > size - len)
            throw new IndexOutOfBoundsException(what + "(" + Fmt.hex(offset) + ", " + len + ") outside " + Fmt.size(size));
        if (mapping == null) throw noMapping(what, offset);
        if (len == 0) return;
        long first = offset >>> shift, last = (offset + len - 1) >>> shift;
        for (long p = first; p <= last; p++) {
            if (!states.tryGet(p, false)) {
                for (long q = first; q < p; q++) states.put(q, false);
                throw refused(what + "(" + Fmt.hex(offset) + ", " + len + ")", p << shift, states.mappability(p));
            }
        }
    }

    private void hostPut(long offset, long len) {
        if (len == 0) return;
        long first = offset >>> shift, last = (offset + len - 1) >>> shift;
        for (long p = first; p <= last; p++) states.put(p, false);
    }

    private HostAccessRefusedException refused(String op, long pageOffset, Mappability m) {
        return new HostAccessRefusedException(op, pageOffset, m, "guest_memfd page at offset " + Fmt.hex(pageOffset)
                + " is " + m + (m == Mappability.GUEST ? " (private): only a FOLL_GUEST lookup may use it"
                : " (converting): nobody may take a reference until its last one is released") + " [" + backing + "]");
    }

    private HostAccessRefusedException noMapping(String op, long offset) {
        return new HostAccessRefusedException(op, offset, null, "this guest_memfd was created without "
                + "MMAP|INIT_SHARED: a host touch would raise SIGBUS, so the library never maps it [" + backing + "]");
    }

    // ------------------------------------------------------------------ plumbing

    private Invalidation invalidation(long offset, long length) {
        if (notifier == null || mapping == null) return null;
        return notifier.invalidate(mapping.address() + offset, mapping.address() + offset + length);
    }

    private long page(long offset) {
        if (offset < 0 || offset >= size)
            throw new IndexOutOfBoundsException("offset " + Fmt.hex(offset) + " outside the " + Fmt.size(size) + " guest_memfd");
        return offset >>> shift;
    }

    private void checkRange(String op, long offset, long length) {
        if (offset < 0 || length <= 0 || offset > size - length)
            throw new KvmException(Errno.EINVAL, op, "range outside the " + Fmt.size(size) + " guest_memfd");
        if ((offset & (pageSize - 1)) != 0 || (length & (pageSize - 1)) != 0)
            throw new KvmException(Errno.EINVAL, op, "offset and length must be multiples of the page size " + Fmt.size(pageSize));
    }

    private void checkOpen() {
        if (closed.get()) throw new IllegalStateException("guest_memfd region " + this + " is closed");
    }

    public boolean isOpen() {
        return !closed.get();
    }

    /** Unmaps the host mapping and closes the pagemap reader and the guest_memfd (or stand-in memfd). */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) return;
        RuntimeException first = null;
        try {
            if (mapping != null) mapping.close();
        } catch (RuntimeException e) {
            first = e;
        }
        try {
            if (pagemap != null) pagemap.close();
        } catch (RuntimeException e) {
            if (first == null) first = e;
            else first.addSuppressed(e);
        }
        try {
            if (gmem != null) gmem.close();
        } catch (RuntimeException e) {
            if (first == null) first = e;
            else first.addSuppressed(e);
        }
        if (first != null) throw first;
    }

    @Override
    public String toString() {
        return "GuestMemfdRegion[" + backing + " fd=" + fd + " " + Fmt.size(size)
                + (mapping != null ? " at " + Fmt.hex(mapping.address()) : " unmapped") + (closed.get() ? " closed" : "") + "]";
    }
}
