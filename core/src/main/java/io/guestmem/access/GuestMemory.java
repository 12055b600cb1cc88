package io.guestmem.access;

import io.guestmem.host.HostRegion;
import io.guestmem.host.RegionView;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotObserver;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.sys.Fmt;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.WritableByteChannel;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Function;

/**
 * Guest physical memory as a VMM's device models see it (rust-vmm {@code vm-memory}'s {@code GuestMemory} and
 * {@code Bytes}): reads, writes, typed little-endian accessors, zero-copy slices and channel I/O at guest
 * physical addresses, over the memslots of one address space of a {@link Memslots}, with the VMM's own dirty
 * log.
 *
 * <h2>Where the bytes are</h2>
 * Memslots hold raw host virtual addresses; this class never dereferences one. Each slot is backed by a
 * {@link HostRegion} {@linkplain #register registered} here whose range contains the slot's hva range
 * ({@link #addRam} registers and creates the slot in one call), through a {@link RegionView} of its own:
 * a segment that dies when the slot is deleted or moved, or when the region closes. A use after any of these
 * throws IllegalStateException, never touches unmapped memory. A slot no registered region backs is
 * {@link GuestMemoryException.Reason#NO_HOST_MEMORY}.
 *
 * <h2>The lookup</h2>
 * On every memslot change (a {@link MemslotObserver} on the writer) and every registration, an immutable
 * {@code Layout} is built: the {@link MemslotSet}, each slot's base gpa, size, view and dirty bitmap, and a
 * bucket table: guest-physical space cut into equal power-of-two buckets no larger than the alignment of the
 * slots' boundaries, each bucket that lies in one plain RAM slot holding the offset from its gpas into one
 * segment shared by all such slots. An access that fits in one bucket is a read of the layout (plain for the
 * plain flavour, so that a device's loop keeps it in registers), a subtraction and a shift, one load from a
 * dense long[] and the segment's bounds and liveness checks: no
 * search, no allocation, no lock, no syscall. Accesses that cross a bucket, hit a hole, an unbacked or a
 * GUEST_MEMFD slot take a checked loop (the memslot lookup, then slot by slot) that still allocates nothing
 * for typed accessors. A layout is retired (its segment closed) as soon as the next one is published; an
 * access that raced the change goes again on the new layout.
 *
 * <h2>Typed accessors</h2>
 * Little-endian, at any gpa for the plain flavour ({@code readU32}, {@code writeU64}, ...; crossing slots
 * allowed). The volatile flavour ({@code readU32Volatile}, ...) has opaque ordering (each access happens,
 * untorn and in program order for that location, as a guest vCPU or another thread may be writing); the
 * atomic flavour ({@code compareAndSetU32}, {@code getAndAddU64}, ...) is a locked read-modify-write. Both
 * require natural alignment (gpa a multiple of the size) and throw IllegalArgumentException otherwise: a
 * misaligned access is not single-copy atomic on the hardware (on x86 a split lock, on arm64 a fault), and
 * since slots are page aligned an aligned access never crosses a slot. u8/u16 come back zero-extended in an
 * int, u32 as the int's bits ({@link Integer#toUnsignedLong} for the value), u64 as a long.
 *
 * <h2>Errors</h2>
 * Bulk reads and writes copy up to the first byte they may not touch and throw a {@link GuestMemoryException}
 * naming that gpa and the bytes done: {@link PartialAccessException} (a hole, an unbacked slot),
 * {@link ReadOnlySlotException}, {@link PrivateMemoryException}. Channel transfers check the whole range
 * first (bytes read from a socket cannot be put back) and only then transfer.
 *
 * <h2>Dirty tracking</h2>
 * Every write through this class (bulk, typed, atomic, channel reads into guest memory) marks the pages it
 * touched in the slot's {@link DirtyBitmap}; {@link #collectDirty(int)} returns and clears them, merged with an
 * external tracker when given. Writes through a {@link #slice} are not seen: call {@link #markDirty} for them.
 *
 * <p>Thread-safe. {@link #close()} detaches from the memslots and invalidates every slot view; it does not
 * close the regions (their owner does).
 */
public final class GuestMemory implements AutoCloseable {

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    // Aligned layouts: their var handles support opaque and atomic modes (and check alignment themselves).
    private static final VarHandle A16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    private static final VarHandle A32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    private static final VarHandle A64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    private static final VarHandle A8 = ValueLayout.JAVA_BYTE.varHandle();
    /** Channel transfers go through ByteBuffers, which hold at most 2 GiB - 1: move at most this per call. */
    private static final int MAX_IO_CHUNK = 1 << 30;

    /** One slot's backing: the slot, the region, the view (null when unbacked) and the dirty log. */
    private record Mapping(Memslot slot, HostRegion region, RegionView view, DirtyBitmap dirty) {
        boolean sameRangeAs(Memslot m) {
            return slot.baseGfn() == m.baseGfn() && slot.npages() == m.npages()
                    && slot.userspaceAddr() == m.userspaceAddr();
        }
    }

    /**
     * What an access needs; immutable once published. Two parts:
     * <ul>
     *   <li>Per slot, parallel to the indices of {@code set}: base gpa, size, view, dirty log. The checked
     *       (slow) path, slices and channel I/O use these.</li>
     *   <li>The fast path: guest-physical space from {@code fastBase} cut into equal power-of-two buckets; per
     *       bucket that lies wholly in one plain RAM slot, the offset that turns a gpa into an offset of
     *       {@code all}, one segment from the lowest to the highest hva of those slots, in an arena of this
     *       layout's own ({@link #NONE} for any other bucket: a hole, a slot boundary inside it, GUEST_MEMFD,
     *       unbacked, and for writes READONLY). An access that fits in its bucket is then a subtraction, a
     *       shift, one load from a dense long[] and one access through a segment every access shares: the
     *       metadata it touches is a few cache lines, which keeps a random read at a bare load's cost
     *       (measured: per-slot or per-bucket segment objects, each with its own scope, cost 1.5-10x on 4K
     *       pages, from TLB and cache misses on the objects themselves).</li>
     * </ul>
     * {@code all} spans memory between the slots that is not guest RAM: it is only ever accessed inside a
     * bucket found here, i.e. inside a slot of an open registered region. Its arena is closed right after a
     * newer layout is published (every change, {@link #close()}), and before a region it covers unmaps (its
     * close hook rebuilds first), so a thread still holding this layout gets IllegalStateException, never
     * unmapped memory; the accessors then retry on the new layout.
     */
    private static final class Layout {
        /** Most buckets the fast path keeps; past it buckets grow, and those a slot boundary cuts go slow. */
        static final int MAX_BUCKETS = 1 << 14;
        /** A bucket the fast path does not serve. */
        static final long NONE = Long.MIN_VALUE;

        final MemslotSet set;
        final int shift;
        final long pageSize;
        final long[] base;             // first gpa of slot i
        final long[] size;             // bytes of slot i
        final MemorySegment[] any;     // the view, or null when unbacked
        final MemorySegment[] read;    // the view when plain loops may use it (backed, not GUEST_MEMFD)
        final DirtyBitmap[] dirty;
        final Mapping[] mapping;

        final Arena arena;             // owns all; null when no bucket is served
        final MemorySegment all;       // [lowest, highest hva) of the served slots
        final long fastBase;           // gpa of bucket 0
        final int fastShift;           // log2 of the bucket size
        final long fastMask;           // bucket size - 1
        final long[] readOff;          // offset in all = gpa + readOff[b], or NONE
        final long[] writeOff;         // the same when the bucket may be written, or NONE
        final DirtyBitmap[] fastDirty; // the dirty log of bucket b's slot
        final long[] fastPage;         // page index in that slot of bucket b's first byte

        Layout(MemslotSet set, Map<Integer, Mapping> mappings) {
            this.set = set;
            PageGeometry g = set.geometry();
            this.shift = g.shift();
            this.pageSize = g.pageSize();
            int n = set.size();
            base = new long[n];
            size = new long[n];
            any = new MemorySegment[n];
            read = new MemorySegment[n];
            boolean[] writable = new boolean[n]; // not READONLY, not a read-only mapping
            dirty = new DirtyBitmap[n];
            mapping = new Mapping[n];
            long align = 0, lo = Long.MAX_VALUE, hi = 0, loHva = Long.MAX_VALUE, hiHva = 0;
            for (int i = 0; i < n; i++) {
                Memslot s = set.slotAt(i);
                Mapping m = mappings.get(s.id());
                mapping[i] = m;
                base[i] = s.baseGfn() << shift;
                size[i] = s.npages() << shift;
                dirty[i] = m.dirty();
                MemorySegment v = m.view() == null ? null : m.view().segment();
                any[i] = v;
                read[i] = v == null || s.guestMemfd() ? null : v;
                writable[i] = read[i] != null && !s.readOnly() && !v.isReadOnly();
                if (read[i] != null) {
                    align |= base[i] | size[i];
                    lo = Math.min(lo, base[i]);
                    hi = Math.max(hi, base[i] + size[i]);
                    loHva = Math.min(loHva, v.address());
                    hiHva = Math.max(hiHva, v.address() + size[i]);
                }
            }
            // The largest bucket that every fast slot's boundaries are aligned to: then each bucket lies wholly
            // inside a slot or wholly outside it. Capped so the tables stay small.
            int k = align == 0 ? shift : Math.min(Long.numberOfTrailingZeros(align), 40);
            if (align != 0) while (((hi - (lo & -(1L << k)) - 1) >>> k) + 1 > MAX_BUCKETS) k++;
            fastShift = k;
            fastMask = (1L << k) - 1;
            fastBase = align == 0 ? 0 : lo & ~fastMask;
            int buckets = align == 0 ? 0 : (int) (((hi - fastBase - 1) >>> k) + 1);
            readOff = new long[buckets];
            writeOff = new long[buckets];
            fastDirty = new DirtyBitmap[buckets];
            fastPage = new long[buckets];
            Arrays.fill(readOff, NONE);
            Arrays.fill(writeOff, NONE);
            boolean served = false;
            for (int b = 0; b < buckets; b++) {
                long start = fastBase + ((long) b << k), end = start + fastMask + 1;
                int i = set.indexOf(start >>> shift);
                if (i < 0 || read[i] == null || base[i] > start || base[i] + size[i] < end) continue;
                // gpa -> hva of the slot's view -> offset in all
                readOff[b] = read[i].address() - base[i] - loHva;
                writeOff[b] = writable[i] ? readOff[b] : NONE;
                fastDirty[b] = dirty[i];
                fastPage[b] = (start - base[i]) >>> shift;
                served = true;
            }
            arena = served ? Arena.ofShared() : null;
            all = served ? MemorySegment.ofAddress(loHva).reinterpret(hiHva - loHva, arena, null) : MemorySegment.NULL;
        }

        /**
         * The fast-path bucket of {@code [gpa, gpa + len)} when the access fits in one served bucket (for a
         * write: one that may be written), else -1. {@code len >= 1}.
         */
        int bucket(long gpa, long len, boolean forWrite) {
            final long r = gpa - fastBase;
            final long b = r >>> fastShift; // a gpa below fastBase gives a huge b
            return b < readOff.length && (r & fastMask) <= fastMask - (len - 1)
                    && (forWrite ? writeOff : readOff)[(int) b] != NONE ? (int) b : -1;
        }

        /** Read-modify-writes under way on this layout; {@link #retire} waits for them (see {@link #enterRmw}). */
        final java.util.concurrent.atomic.AtomicInteger rmwInFlight = new java.util.concurrent.atomic.AtomicInteger();
        volatile boolean retiring;

        /**
         * Closes the arena of {@code all}: threads still holding this layout get IllegalStateException. Waits first
         * for the read-modify-writes under way: the JDK's close handshake may deliver its exception to a thread
         * just after its access completed, and a retried add or compare-and-set would then apply twice.
         */
        void retire() {
            retiring = true;
            while (rmwInFlight.get() != 0) Thread.onSpinWait();
            if (arena != null) arena.close();
        }
    }

    private final Memslots memslots;
    private final int addressSpace;
    private final PageGeometry geometry;
    private final MemslotObserver observer = new Observer();
    private final List<HostRegion> regions = new ArrayList<>();       // guarded by this
    private Map<Integer, Mapping> mappings = new HashMap<>();          // guarded by this
    private Layout layout; // read plainly on the fast paths (see current()), published with LAYOUT
    private volatile PageAccessPolicy policy;
    private boolean closed;                                            // guarded by this

    private static final VarHandle LAYOUT;
    static {
        try {
            LAYOUT = MethodHandles.lookup().findVarHandle(GuestMemory.class, "layout", Layout.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /**
     * The current layout, read with acquire ordering: what every path uses that may refuse an access (not
     * RAM, read-only, private) or that goes through a slot's own view, so that it never refuses or serves
     * on a layout a finished memslot change replaced.
     *
     * <p>The plain typed and byte[] fast paths instead read {@code layout} plainly, so that the JIT can keep
     * it (and the table and segment it holds) in registers across a device model's loop: a read then costs
     * the arithmetic, one table load and the access itself. That is sound because a fast path only ever
     * serves a bucket through {@code all}, and a layout's arena is closed as soon as the next one is
     * published: a thread still using an old layout gets IllegalStateException from the closed arena (the
     * JDK's close handshake deoptimizes compiled frames that hoisted the liveness check), goes to
     * {@link #retired}, which re-reads here, and retries; and a fast-path miss goes to a slow path that
     * starts from here.
     */
    private Layout current() {
        return (Layout) LAYOUT.getAcquire(this);
    }

    /** Guest memory over address space 0 of {@code memslots}, every page accessible (no private memory). */
    public GuestMemory(Memslots memslots) {
        this(memslots, 0, PageAccessPolicy.ALLOW_ALL);
    }

    /**
     * Guest memory over address space {@code addressSpace} of {@code memslots}; {@code policy} is asked
     * about every page of a GUEST_MEMFD slot before it is touched.
     */
    public GuestMemory(Memslots memslots, int addressSpace, PageAccessPolicy policy) {
        this.memslots = Objects.requireNonNull(memslots, "memslots");
        if (addressSpace < 0 || addressSpace >= memslots.addressSpaces())
            throw new IllegalArgumentException("address space " + addressSpace + " of " + memslots.addressSpaces());
        this.addressSpace = addressSpace;
        this.geometry = memslots.geometry();
        this.policy = Objects.requireNonNull(policy, "policy");
        synchronized (this) {
            memslots.addObserver(observer);
            rebuild();
        }
    }

    // ------------------------------------------------------------------------------------------ setup

    /** The memslots this memory follows. */
    public Memslots memslots() {
        return memslots;
    }

    public int addressSpace() {
        return addressSpace;
    }

    /** Replaces the page access policy (asked for GUEST_MEMFD slots only). */
    public void setPolicy(PageAccessPolicy policy) {
        this.policy = Objects.requireNonNull(policy, "policy");
    }

    /**
     * Makes {@code region} the backing of every slot (present or future) whose hva range lies inside it. When
     * the region closes, the slots it backed lose their views (stale slices throw) and become
     * {@link GuestMemoryException.Reason#NO_HOST_MEMORY}. Registering twice does nothing.
     */
    public void register(HostRegion region) {
        Objects.requireNonNull(region, "region");
        synchronized (this) {
            checkOpen();
            if (regions.contains(region)) return;
            if (!region.isOpen()) throw new IllegalStateException("host region " + region + " is closed");
            regions.add(region);
            rebuild();
        }
        region.onClose(() -> regionClosed(region)); // outside our lock: may run now if it closed meanwhile
    }

    /** {@link #addRam(int, long, HostRegion, long, long, int)} of the whole region, read-write. */
    public Memslot addRam(int slotId, long gpa, HostRegion region) {
        return addRam(slotId, gpa, region, 0, region.size(), 0);
    }

    /**
     * Registers {@code region} and creates memslot {@code slotId} of {@code size} bytes at {@code gpa}, backed
     * by the region from {@code offset}, with memslot {@code flags} ({@link Memslot#READONLY},
     * {@link Memslot#LOG_DIRTY_PAGES}). The memslot writer validates as KVM does (KvmException) and its
     * observers (a KVM mirror) see the slot.
     *
     * @return the slot as published
     */
    public Memslot addRam(int slotId, long gpa, HostRegion region, long offset, long size, int flags) {
        if (offset < 0 || size <= 0 || offset > region.size() - size)
            throw new IllegalArgumentException("range " + Fmt.hex(offset) + "+" + Fmt.hex(size) + " is not inside " + region);
        register(region);
        // Not under our lock: the writer takes its own lock, then calls our observer (which takes ours).
        memslots.setMemslot(addressSpace, slotId, flags, gpa, size, region.address() + offset);
        return memslots.current(addressSpace).byId(slotId);
    }

    /** Deletes memslot {@code slotId} (its view dies: slices of it throw from then on). */
    public void removeRam(int slotId) {
        memslots.deleteMemslot(addressSpace, slotId);
    }

    // ------------------------------------------------------------------------------------------ bulk

    /** Reads {@code dst.length} bytes at {@code gpa}. */
    public void read(long gpa, byte[] dst) {
        read(gpa, dst, 0, dst.length);
    }

    /** Reads {@code len} bytes at {@code gpa} into {@code dst[off..]}. */
    public void read(long gpa, byte[] dst, int off, int len) {
        Objects.checkFromIndexSize(off, len, dst.length);
        if (len == 0) return;
        final Layout l = layout;
        final int b = l.bucket(gpa, len, false);
        if (b >= 0) {
            try {
                MemorySegment.copy(l.all, ValueLayout.JAVA_BYTE, gpa + l.readOff[b], dst, off, len);
                return;
            } catch (IllegalStateException e) {
                retired(l, e); // the layout changed under us: go again on the new one
                read(gpa, dst, off, len);
                return;
            }
        }
        copy(current(), gpa, MemorySegment.ofArray(dst).asSlice(off, len), false, "read");
    }

    /** Reads {@code dst.remaining()} bytes at {@code gpa}; the position advances by the bytes read, even on error. */
    public void read(long gpa, ByteBuffer dst) {
        bufferCopy(gpa, dst, false, "read");
    }

    /** Reads {@code dst.byteSize()} bytes at {@code gpa} into {@code dst}. */
    public void read(long gpa, MemorySegment dst) {
        copy(current(), gpa, dst, false, "read");
    }

    /** Writes {@code src} at {@code gpa}. */
    public void write(long gpa, byte[] src) {
        write(gpa, src, 0, src.length);
    }

    /** Writes {@code src[off..off+len)} at {@code gpa}. */
    public void write(long gpa, byte[] src, int off, int len) {
        Objects.checkFromIndexSize(off, len, src.length);
        if (len == 0) return;
        final Layout l = layout;
        final int b = l.bucket(gpa, len, true);
        if (b >= 0) {
            try {
                MemorySegment.copy(src, off, l.all, ValueLayout.JAVA_BYTE, gpa + l.writeOff[b], len);
            } catch (IllegalStateException e) {
                retired(l, e);
                write(gpa, src, off, len);
                return;
            }
            markFast(l, b, gpa, len);
            return;
        }
        copy(current(), gpa, MemorySegment.ofArray(src).asSlice(off, len), true, "write");
    }

    /** Writes {@code src.remaining()} bytes at {@code gpa}; the position advances by the bytes written, even on error. */
    public void write(long gpa, ByteBuffer src) {
        bufferCopy(gpa, src, true, "write");
    }

    /** Writes the bytes of {@code src} at {@code gpa}. */
    public void write(long gpa, MemorySegment src) {
        copy(current(), gpa, src, true, "write");
    }

    /** Sets {@code len} bytes at {@code gpa} to {@code value}. */
    public void fill(long gpa, long len, byte value) {
        Layout l = current();
        long done = 0;
        while (done < len) {
            long g = gpa + done;
            int i = checkedIndex(l, g, done, true, "fill");
            long o = g - l.base[i];
            long n = Math.min(len - done, chunkEnd(l, i, o) - o);
            l.any[i].asSlice(o, n).fill(value);
            markWritten(l, i, o, n);
            done += n;
        }
    }

    private void bufferCopy(long gpa, ByteBuffer buf, boolean write, String op) {
        int pos = buf.position();
        MemorySegment seg = MemorySegment.ofBuffer(buf); // [position, limit)
        try {
            copy(current(), gpa, seg, write, op);
            buf.position(buf.limit());
        } catch (GuestMemoryException e) {
            buf.position(pos + (int) e.bytesDone());
            throw e;
        }
    }

    /** The general loop: slot by slot (page by page in GUEST_MEMFD slots), stopping at the first refusal. */
    private void copy(Layout l, long gpa, MemorySegment other, boolean write, String op) {
        long len = other.byteSize();
        long done = 0;
        while (done < len) {
            long g = gpa + done;
            int i = checkedIndex(l, g, done, write, op);
            long o = g - l.base[i];
            long n = Math.min(len - done, chunkEnd(l, i, o) - o);
            if (write) {
                MemorySegment.copy(other, done, l.any[i], o, n);
                markWritten(l, i, o, n);
            } else {
                MemorySegment.copy(l.any[i], o, other, done, n);
            }
            done += n;
        }
    }

    /**
     * The slot index for an access at {@code g} that may go ahead, or a typed exception naming {@code g} and
     * the bytes done. For a GUEST_MEMFD slot this asks the policy about g's page.
     */
    private int checkedIndex(Layout l, long g, long done, boolean write, String op) {
        int i = g < 0 ? -1 : l.set.indexOf(g >>> l.shift); // gpas are below 2^63 in every memslot
        if (i < 0) throw new PartialAccessException(GuestMemoryException.Reason.NOT_RAM, op, g, done, -1, "not RAM");
        Memslot s = l.mapping[i].slot();
        if (l.any[i] == null) {
            throw new PartialAccessException(GuestMemoryException.Reason.NO_HOST_MEMORY, op, g, done, s.id(),
                    "slot " + s.id() + " (hva " + Fmt.hex(s.userspaceAddr()) + ") has no registered host region");
        }
        if (write && (s.readOnly() || l.any[i].isReadOnly())) {
            throw new ReadOnlySlotException(op, g, done, s.id(), s.readOnly() ? "slot " + s.id() + " is READONLY"
                    : "slot " + s.id() + " is backed by read-only host memory");
        }
        if (s.guestMemfd()) {
            long gfn = g >>> l.shift;
            if (!policy.mayAccess(s, gfn, write)) throw new PrivateMemoryException(op, g, done, s.id(), gfn);
        }
        return i;
    }

    /** Where a chunk starting at offset {@code o} of slot {@code i} must end: the slot's end, or the page's for GUEST_MEMFD. */
    private static long chunkEnd(Layout l, int i, long o) {
        return l.read[i] != null ? l.size[i] : Math.min(l.size[i], (o | (l.pageSize - 1)) + 1);
    }

    /** Marks the pages of {@code len} bytes written at {@code gpa} through fast bucket {@code b}. */
    private static void markFast(Layout l, int b, long gpa, long len) {
        long o = (gpa - l.fastBase) & l.fastMask;
        long first = o >>> l.shift;
        l.fastDirty[b].markRange(l.fastPage[b] + first, ((o + len - 1) >>> l.shift) - first + 1);
    }

    /**
     * Called when an access through layout {@code l} threw IllegalStateException: returns when {@code l} is no
     * longer the current layout (it was retired, its segments closed, between our read of it and the access:
     * the caller goes again on the new one), else rethrows.
     */
    private void retired(Layout l, IllegalStateException e) {
        if (current() == l) throw e;
    }

    /**
     * The current layout, held open for one read-modify-write: {@link Layout#retire} does not close it until
     * {@link #exitRmw}. Unlike plain loads and stores, an atomic update is never retried after an
     * IllegalStateException, because the update may already have happened (Dekker-style: we count ourselves in,
     * then check {@code retiring}; retire sets it, then waits for the count).
     */
    private Layout enterRmw() {
        while (true) {
            Layout l = current();
            l.rmwInFlight.incrementAndGet();
            if (!l.retiring) return l;
            l.rmwInFlight.decrementAndGet();
            if (current() == l) throw new IllegalStateException("guest memory is closed");
        }
    }

    private static void exitRmw(Layout l) {
        l.rmwInFlight.decrementAndGet();
    }

    private static void markWritten(Layout l, int i, long o, long len) {
        long first = o >>> l.shift;
        l.dirty[i].markRange(first, ((o + len - 1) >>> l.shift) - first + 1);
    }

    // ------------------------------------------------------------------------------------------ typed: plain

    /** The byte at {@code gpa}, zero-extended. */
    public int readU8(long gpa) {
        final Layout l = layout;
        final int b = l.bucket(gpa, 1, false);
        if (b >= 0) {
            try {
                return Byte.toUnsignedInt(l.all.get(ValueLayout.JAVA_BYTE, gpa + l.readOff[b]));
            } catch (IllegalStateException e) {
                retired(l, e);
                return readU8(gpa);
            }
        }
        return (int) readSlow(gpa, 1, "readU8");
    }

    /** The little-endian u16 at {@code gpa} (any alignment), zero-extended. */
    public int readU16(long gpa) {
        final Layout l = layout;
        final int b = l.bucket(gpa, 2, false);
        if (b >= 0) {
            try {
                return Short.toUnsignedInt(l.all.get(U16, gpa + l.readOff[b]));
            } catch (IllegalStateException e) {
                retired(l, e);
                return readU16(gpa);
            }
        }
        return (int) readSlow(gpa, 2, "readU16");
    }

    /** The little-endian u32 at {@code gpa} (any alignment), as an int's bits. */
    public int readU32(long gpa) {
        final Layout l = layout;
        final int b = l.bucket(gpa, 4, false);
        if (b >= 0) {
            try {
                return l.all.get(U32, gpa + l.readOff[b]);
            } catch (IllegalStateException e) {
                retired(l, e);
                return readU32(gpa);
            }
        }
        return (int) readSlow(gpa, 4, "readU32");
    }

    /** The little-endian u64 at {@code gpa} (any alignment). */
    public long readU64(long gpa) {
        final Layout l = layout;
        final int b = l.bucket(gpa, 8, false);
        if (b >= 0) {
            try {
                return l.all.get(U64, gpa + l.readOff[b]);
            } catch (IllegalStateException e) {
                retired(l, e);
                return readU64(gpa);
            }
        }
        return readSlow(gpa, 8, "readU64");
    }

    /** Writes the low byte of {@code value} at {@code gpa}. */
    public void writeU8(long gpa, int value) {
        final Layout l = layout;
        final int b = l.bucket(gpa, 1, true);
        if (b >= 0) {
            try {
                l.all.set(ValueLayout.JAVA_BYTE, gpa + l.writeOff[b], (byte) value);
            } catch (IllegalStateException e) {
                retired(l, e);
                writeU8(gpa, value);
                return;
            }
            markFast(l, b, gpa, 1);
            return;
        }
        writeSlow(gpa, 1, value, "writeU8");
    }

    /** Writes the low 16 bits of {@code value}, little-endian, at {@code gpa} (any alignment). */
    public void writeU16(long gpa, int value) {
        final Layout l = layout;
        final int b = l.bucket(gpa, 2, true);
        if (b >= 0) {
            try {
                l.all.set(U16, gpa + l.writeOff[b], (short) value);
            } catch (IllegalStateException e) {
                retired(l, e);
                writeU16(gpa, value);
                return;
            }
            markFast(l, b, gpa, 2);
            return;
        }
        writeSlow(gpa, 2, value, "writeU16");
    }

    /** Writes {@code value}, little-endian, at {@code gpa} (any alignment). */
    public void writeU32(long gpa, int value) {
        final Layout l = layout;
        final int b = l.bucket(gpa, 4, true);
        if (b >= 0) {
            try {
                l.all.set(U32, gpa + l.writeOff[b], value);
            } catch (IllegalStateException e) {
                retired(l, e);
                writeU32(gpa, value);
                return;
            }
            markFast(l, b, gpa, 4);
            return;
        }
        writeSlow(gpa, 4, value, "writeU32");
    }

    /** Writes {@code value}, little-endian, at {@code gpa} (any alignment). */
    public void writeU64(long gpa, long value) {
        final Layout l = layout;
        final int b = l.bucket(gpa, 8, true);
        if (b >= 0) {
            try {
                l.all.set(U64, gpa + l.writeOff[b], value);
            } catch (IllegalStateException e) {
                retired(l, e);
                writeU64(gpa, value);
                return;
            }
            markFast(l, b, gpa, 8);
            return;
        }
        writeSlow(gpa, 8, value, "writeU64");
    }

    /** Byte by byte through the checked path: crossing slots, GUEST_MEMFD pages, errors. Allocation-free. */
    private long readSlow(long gpa, int n, String op) {
        Layout l = current();
        long v = 0;
        for (int k = 0; k < n; k++) {
            long g = gpa + k;
            int i = checkedIndex(l, g, k, false, op);
            v |= Byte.toUnsignedLong(l.any[i].get(ValueLayout.JAVA_BYTE, g - l.base[i])) << (8 * k);
        }
        return v;
    }

    /**
     * Checks every byte first, so that a typed write is all or nothing (a u64 half-written across a hole would
     * be worse than none), then writes byte by byte.
     */
    private void writeSlow(long gpa, int n, long value, String op) {
        Layout l = current();
        for (int k = 0; k < n; k++) checkedIndex(l, gpa + k, 0, true, op);
        for (int k = 0; k < n; k++) {
            long g = gpa + k;
            int i = checkedIndex(l, g, k, true, op);
            long o = g - l.base[i];
            l.any[i].set(ValueLayout.JAVA_BYTE, o, (byte) (value >>> (8 * k)));
            l.dirty[i].mark(o >>> l.shift);
        }
    }

    // ------------------------------------------------------------------------------------------ typed: volatile, atomic

    /*
     * The volatile and atomic flavours name where they access with a handle: h >= 0 is fast bucket h (its
     * slice, offsets within the bucket), h < 0 is slot ~h through the checked path (its view, offsets within
     * the slot). No allocation either way.
     */

    /** The handle of a naturally aligned {@code size}-byte access at {@code gpa}; throws as the checked path does. */
    private int aligned(Layout l, long gpa, int size, boolean write, String op) {
        if ((gpa & (size - 1)) != 0)
            throw new IllegalArgumentException(op + " at gpa " + Fmt.hex(gpa) + ": not " + size + "-byte aligned");
        int b = l.bucket(gpa, size, write);
        if (b >= 0) return b;
        return ~checkedIndex(l, gpa, 0, write, op);
    }

    private static MemorySegment segment(Layout l, int h) {
        return h >= 0 ? l.all : l.any[~h];
    }

    private static long offset(Layout l, int h, long gpa) {
        return h >= 0 ? gpa + l.readOff[h] : gpa - l.base[~h];
    }

    /** Marks the page of an aligned access (which never crosses a page). */
    private static void mark(Layout l, int h, long gpa) {
        if (h >= 0) l.fastDirty[h].mark(l.fastPage[h] + (((gpa - l.fastBase) & l.fastMask) >>> l.shift));
        else l.dirty[~h].mark((gpa - l.base[~h]) >>> l.shift);
    }

    /** The byte at {@code gpa} with opaque ordering, zero-extended. */
    public int readU8Volatile(long gpa) {
        final Layout l = current();
        final int h = aligned(l, gpa, 1, false, "readU8Volatile");
        try {
            return Byte.toUnsignedInt((byte) A8.getOpaque(segment(l, h), offset(l, h, gpa)));
        } catch (IllegalStateException e) {
            retired(l, e); // the layout changed under us: go again on the new one
            return readU8Volatile(gpa);
        }
    }

    /** The u16 at {@code gpa} (2-byte aligned) with opaque ordering, zero-extended. */
    public int readU16Volatile(long gpa) {
        final Layout l = current();
        final int h = aligned(l, gpa, 2, false, "readU16Volatile");
        try {
            return Short.toUnsignedInt((short) A16.getOpaque(segment(l, h), offset(l, h, gpa)));
        } catch (IllegalStateException e) {
            retired(l, e); // the layout changed under us: go again on the new one
            return readU16Volatile(gpa);
        }
    }

    /** The u32 at {@code gpa} (4-byte aligned) with opaque ordering. */
    public int readU32Volatile(long gpa) {
        final Layout l = current();
        final int h = aligned(l, gpa, 4, false, "readU32Volatile");
        try {
            return (int) A32.getOpaque(segment(l, h), offset(l, h, gpa));
        } catch (IllegalStateException e) {
            retired(l, e); // the layout changed under us: go again on the new one
            return readU32Volatile(gpa);
        }
    }

    /** The u64 at {@code gpa} (8-byte aligned) with opaque ordering. */
    public long readU64Volatile(long gpa) {
        final Layout l = current();
        final int h = aligned(l, gpa, 8, false, "readU64Volatile");
        try {
            return (long) A64.getOpaque(segment(l, h), offset(l, h, gpa));
        } catch (IllegalStateException e) {
            retired(l, e); // the layout changed under us: go again on the new one
            return readU64Volatile(gpa);
        }
    }

    /** Writes a byte with opaque ordering. */
    public void writeU8Volatile(long gpa, int value) {
        final Layout l = current();
        final int h = aligned(l, gpa, 1, true, "writeU8Volatile");
        try {
            A8.setOpaque(segment(l, h), offset(l, h, gpa), (byte) value);
        } catch (IllegalStateException e) {
            retired(l, e);
            writeU8Volatile(gpa, value);
            return;
        }
        mark(l, h, gpa);
    }

    /** Writes a u16 (2-byte aligned) with opaque ordering. */
    public void writeU16Volatile(long gpa, int value) {
        final Layout l = current();
        final int h = aligned(l, gpa, 2, true, "writeU16Volatile");
        try {
            A16.setOpaque(segment(l, h), offset(l, h, gpa), (short) value);
        } catch (IllegalStateException e) {
            retired(l, e);
            writeU16Volatile(gpa, value);
            return;
        }
        mark(l, h, gpa);
    }

    /** Writes a u32 (4-byte aligned) with opaque ordering. */
    public void writeU32Volatile(long gpa, int value) {
        final Layout l = current();
        final int h = aligned(l, gpa, 4, true, "writeU32Volatile");
        try {
            A32.setOpaque(segment(l, h), offset(l, h, gpa), value);
        } catch (IllegalStateException e) {
            retired(l, e);
            writeU32Volatile(gpa, value);
            return;
        }
        mark(l, h, gpa);
    }

    /** Writes a u64 (8-byte aligned) with opaque ordering. */
    public void writeU64Volatile(long gpa, long value) {
        final Layout l = current();
        final int h = aligned(l, gpa, 8, true, "writeU64Volatile");
        try {
            A64.setOpaque(segment(l, h), offset(l, h, gpa), value);
        } catch (IllegalStateException e) {
            retired(l, e);
            writeU64Volatile(gpa, value);
            return;
        }
        mark(l, h, gpa);
    }

    /** Atomically sets the u32 at {@code gpa} (4-byte aligned) to {@code update} if it is {@code expect}. */
    public boolean compareAndSetU32(long gpa, int expect, int update) {
        final Layout l = enterRmw();
        try {
            final int h = aligned(l, gpa, 4, true, "compareAndSetU32");
            boolean ok = A32.compareAndSet(segment(l, h), offset(l, h, gpa), expect, update);
            if (ok) mark(l, h, gpa);
            return ok;
        } finally {
            exitRmw(l);
        }
    }

    /** Atomically sets the u64 at {@code gpa} (8-byte aligned) to {@code update} if it is {@code expect}. */
    public boolean compareAndSetU64(long gpa, long expect, long update) {
        final Layout l = enterRmw();
        try {
            final int h = aligned(l, gpa, 8, true, "compareAndSetU64");
            boolean ok = A64.compareAndSet(segment(l, h), offset(l, h, gpa), expect, update);
            if (ok) mark(l, h, gpa);
            return ok;
        } finally {
            exitRmw(l);
        }
    }

    /** Atomically adds {@code delta} to the u32 at {@code gpa} (4-byte aligned, wrapping); returns the old value. */
    public int getAndAddU32(long gpa, int delta) {
        final Layout l = enterRmw();
        try {
            final int h = aligned(l, gpa, 4, true, "getAndAddU32");
            int old = (int) A32.getAndAdd(segment(l, h), offset(l, h, gpa), delta);
            mark(l, h, gpa);
            return old;
        } finally {
            exitRmw(l);
        }
    }

    /** Atomically adds {@code delta} to the u64 at {@code gpa} (8-byte aligned, wrapping); returns the old value. */
    public long getAndAddU64(long gpa, long delta) {
        final Layout l = enterRmw();
        try {
            final int h = aligned(l, gpa, 8, true, "getAndAddU64");
            long old = (long) A64.getAndAdd(segment(l, h), offset(l, h, gpa), delta);
            mark(l, h, gpa);
            return old;
        } finally {
            exitRmw(l);
        }
    }

    // ------------------------------------------------------------------------------------------ slices

    /**
     * A zero-copy segment over {@code [gpa, gpa + len)}, which must lie in one slot (else a
     * {@link PartialAccessException} naming the first gpa past the slot, with 0 bytes done). It is read-only
     * for a READONLY slot. It stops working (IllegalStateException, from any thread) when the slot is deleted
     * or moved, when its region closes, or when this GuestMemory closes. For a GUEST_MEMFD slot the policy is
     * asked for every page now, and the caller must not keep the slice across a conversion to private.
     * Writes through the slice are not dirty-tracked: call {@link #markDirty}.
     */
    public MemorySegment slice(long gpa, long len) {
        if (len <= 0) throw new IllegalArgumentException("slice length " + len);
        Layout l = current();
        int i = checkedIndex(l, gpa, 0, false, "slice");
        long o = gpa - l.base[i];
        if (len > l.size[i] - o) {
            long end = l.base[i] + l.size[i];
            throw new PartialAccessException(GuestMemoryException.Reason.NOT_RAM, "slice(" + Fmt.hex(gpa) + ", " + len + ")",
                    end, 0, l.mapping[i].slot().id(), "a slice must stay inside slot " + l.mapping[i].slot().id()
                    + " which ends there");
        }
        if (l.read[i] == null) { // GUEST_MEMFD: every page must be host-accessible
            for (long p = gpa & geometry.mask(); p < gpa + len; p += l.pageSize) checkedIndex(l, Math.max(p, gpa), 0, false, "slice");
        }
        MemorySegment s = l.any[i].asSlice(o, len);
        return l.mapping[i].slot().readOnly() ? s.asReadOnly() : s;
    }

    /** Marks {@code [gpa, gpa + len)} dirty (for writes made through a {@link #slice}); holes are an error. */
    public void markDirty(long gpa, long len) {
        Layout l = current();
        long done = 0;
        while (done < len) {
            long g = gpa + done;
            int i = l.set.indexOf(g >>> l.shift);
            if (g < 0 || i < 0) throw new PartialAccessException(GuestMemoryException.Reason.NOT_RAM, "markDirty", g, done, -1, "not RAM");
            long o = g - l.base[i];
            long n = Math.min(len - done, l.size[i] - o);
            markWritten(l, i, o, n);
            done += n;
        }
    }

    // ------------------------------------------------------------------------------------------ channels

    /**
     * Reads up to {@code len} bytes from {@code ch} straight into guest memory at {@code gpa} (the channel
     * reads into direct buffers over guest RAM: no intermediate copy). Returns the bytes transferred: fewer
     * than {@code len} at end of stream or when a non-blocking channel has nothing more now; -1 at end of
     * stream before any byte. The whole range is checked first (holes, read-only, private pages: typed
     * exception with 0 bytes done), so nothing is consumed from the channel that cannot be stored.
     */
    public long readFrom(long gpa, ReadableByteChannel ch, long len) throws IOException {
        return transfer(gpa, len, true, "readFrom", (bb, pos) -> ch.read(bb));
    }

    /** {@link #readFrom(long, ReadableByteChannel, long)} from file offset {@code position} (the channel's position is unchanged). */
    public long readFrom(long gpa, FileChannel ch, long position, long len) throws IOException {
        return transfer(gpa, len, true, "readFrom", (bb, done) -> ch.read(bb, position + done));
    }

    /**
     * Writes up to {@code len} bytes of guest memory at {@code gpa} to {@code ch}, from direct buffers over
     * guest RAM. Returns the bytes transferred (fewer when a non-blocking channel takes no more now). The
     * range is checked first, as for {@link #readFrom}.
     */
    public long writeTo(long gpa, WritableByteChannel ch, long len) throws IOException {
        return transfer(gpa, len, false, "writeTo", (bb, done) -> ch.write(bb));
    }

    /** {@link #writeTo(long, WritableByteChannel, long)} at file offset {@code position} (the channel's position is unchanged). */
    public long writeTo(long gpa, FileChannel ch, long position, long len) throws IOException {
        return transfer(gpa, len, false, "writeTo", (bb, done) -> ch.write(bb, position + done));
    }

    @FunctionalInterface
    private interface Io {
        /** One channel call on {@code bb}, {@code done} bytes into the transfer; returns its count (-1: EOF). */
        int run(ByteBuffer bb, long done) throws IOException;
    }

    private long transfer(long gpa, long len, boolean intoGuest, String op, Io io) throws IOException {
        if (len < 0) throw new IllegalArgumentException(op + " length " + len);
        Layout l = current();
        for (long done = 0; done < len; ) { // check everything before moving a byte
            long g = gpa + done;
            int i = checkedIndex(l, g, 0, intoGuest, op);
            long o = g - l.base[i];
            done += Math.min(len - done, chunkEnd(l, i, o) - o);
        }
        long done = 0;
        while (done < len) {
            long g = gpa + done;
            int i = checkedIndex(l, g, done, intoGuest, op);
            long o = g - l.base[i];
            long n = Math.min(Math.min(len - done, l.size[i] - o), MAX_IO_CHUNK);
            ByteBuffer bb = l.any[i].asSlice(o, n).asByteBuffer();
            long moved = 0;
            int r = 0;
            while (bb.hasRemaining()) {
                r = io.run(bb, done + moved);
                if (r <= 0) break;
                moved += r;
            }
            if (intoGuest && moved > 0) markWritten(l, i, o, moved);
            done += moved;
            if (r < 0) return done == 0 ? -1 : done;
            if (r == 0 && bb.hasRemaining()) return done;
        }
        return done;
    }

    // ------------------------------------------------------------------------------------------ dirty log

    /** The VMM's dirty bitmap of slot {@code slotId}. */
    public DirtyBitmap dirtyBitmap(int slotId) {
        return mappingOf(slotId).dirty();
    }

    /** Pages of slot {@code slotId} written through this API since the last collect; clears them. */
    public DirtyPages collectDirty(int slotId) {
        Mapping m = mappingOf(slotId);
        long[] bits = m.dirty().getAndClear();
        long vmm = count(bits);
        return new DirtyPages(slotId, m.slot().baseGfn(), m.slot().npages(), bits, vmm, 0);
    }

    /**
     * The "pages to send" of slot {@code slotId}: the VMM's writes (collected and cleared) plus
     * {@code externalGfns}, the absolute gfns an external tracker reported for the slot (KVM's dirty log or
     * ring, uffd-wp + PAGEMAP_SCAN: what {@code SlotDirtyTracker.collect()} returns). A gfn outside the slot
     * is an IllegalArgumentException (checked before the VMM's bits are cleared).
     */
    public DirtyPages collectDirty(int slotId, long[] externalGfns) {
        Mapping m = mappingOf(slotId);
        for (long g : externalGfns) {
            if (!m.slot().containsGfn(g))
                throw new IllegalArgumentException("gfn 0x" + Long.toHexString(g) + " is not in slot " + slotId);
        }
        long[] bits = m.dirty().getAndClear();
        long vmm = count(bits);
        long ext = DirtyPages.orGfns(bits, m.slot(), externalGfns);
        return new DirtyPages(slotId, m.slot().baseGfn(), m.slot().npages(), bits, vmm, ext);
    }

    /**
     * Like {@link #collectDirty(int, long[])} with a KVM_GET_DIRTY_LOG bitmap (bit i of word i/64 = page i of
     * the slot, {@link DirtyBitmap#wordsFor} words; bits past the slot's end must be clear).
     */
    public DirtyPages collectDirtyWithBitmap(int slotId, long[] externalBitmap) {
        Mapping m = mappingOf(slotId);
        long npages = m.slot().npages();
        int words = DirtyBitmap.wordsFor(npages);
        if (externalBitmap.length != words)
            throw new IllegalArgumentException("bitmap of " + externalBitmap.length + " words for a slot of " + npages + " pages (" + words + " words)");
        if ((npages & 63) != 0 && (externalBitmap[words - 1] & (-1L << npages)) != 0)
            throw new IllegalArgumentException("bitmap has bits past the end of slot " + slotId);
        long[] bits = m.dirty().getAndClear();
        long vmm = count(bits);
        for (int w = 0; w < words; w++) bits[w] |= externalBitmap[w];
        return new DirtyPages(slotId, m.slot().baseGfn(), npages, bits, vmm, count(externalBitmap));
    }

    /**
     * The pages to send of every slot, in gfn order: each slot's VMM writes merged with
     * {@code externalGfns.apply(slot)} (absolute gfns; null or empty for none).
     */
    public List<DirtyPages> pagesToSend(Function<Memslot, long[]> externalGfns) {
        List<DirtyPages> out = new ArrayList<>();
        for (Memslot s : current().set.slots()) {
            long[] ext = externalGfns == null ? null : externalGfns.apply(s);
            out.add(ext == null ? collectDirty(s.id()) : collectDirty(s.id(), ext));
        }
        return out;
    }

    private static long count(long[] bits) {
        long n = 0;
        for (long w : bits) n += Long.bitCount(w);
        return n;
    }

    private Mapping mappingOf(int slotId) {
        Layout l = current();
        for (Mapping m : l.mapping) if (m.slot().id() == slotId) return m;
        throw new IllegalArgumentException("no slot " + slotId + " in address space " + addressSpace);
    }

    // ------------------------------------------------------------------------------------------ sharing

    /**
     * The vhost-user memory table: one row per slot backed by a shareable region (memfd, hugetlb memfd,
     * guest_memfd or another caller fd), in gpa order. Another process maps {@code fd} (passed over a unix
     * socket, or opened as {@code /proc/PID/fd/N}) at {@code fdOffset} for {@code size} bytes.
     */
    public List<SharedRegion> sharedRegions() {
        List<SharedRegion> out = new ArrayList<>();
        for (Mapping m : current().mapping) {
            if (m.view() == null || !m.region().isOpen()) continue;
            var fd = m.region().fd();
            if (fd.isEmpty()) continue;
            Memslot s = m.slot();
            long inRegion = s.userspaceAddr() - m.region().address();
            out.add(new SharedRegion(s.id(), s.baseGfn() << geometry.shift(), s.npages() << geometry.shift(),
                    s.userspaceAddr(), fd.getAsInt(), m.region().fdOffset() + inRegion, m.region().backing()));
        }
        return out;
    }

    // ------------------------------------------------------------------------------------------ lookup for benchmarks

    /**
     * The gpa -> slot step alone: the index of the slot holding {@code gpa} in the current layout, or -1.
     * Allocation-free; what every accessor does first.
     */
    public int slotIndexOf(long gpa) {
        final Layout l = current();
        return l.set.indexOf(gpa >>> l.shift);
    }

    /** The memslot set the accessors currently use (the one of the last change this memory saw). */
    public MemslotSet memslotSet() {
        return current().set;
    }

    // ------------------------------------------------------------------------------------------ life cycle

    private final class Observer implements MemslotObserver {
        @Override
        public void beforeCommit(MemslotChange change) {
            // nothing to refuse: an unbacked slot is legal (NO_HOST_MEMORY on access)
        }

        @Override
        public void committed(MemslotChange change) {
            Memslot key = change.updated() != null ? change.updated() : change.old();
            if (key.addressSpace() != addressSpace) return;
            synchronized (GuestMemory.this) {
                if (!closed) rebuild();
            }
        }
    }

    private void regionClosed(HostRegion region) {
        synchronized (this) {
            regions.remove(region);
            if (!closed) rebuild();
        }
    }

    /**
     * Makes the mappings match the current memslot set: keeps a slot's view while its gfn range and hva stay
     * (FLAGS_ONLY changes), gives a moved or newly backed slot a new view, and closes the views of slots that
     * are gone, moved, or whose region is closing, after the new layout is published.
     */
    private void rebuild() {
        MemslotSet set = memslots.current(addressSpace);
        Map<Integer, Mapping> next = new HashMap<>();
        List<RegionView> stale = new ArrayList<>();
        for (Memslot s : set.slots()) {
            Mapping old = mappings.get(s.id());
            if (old != null && old.view() != null && old.sameRangeAs(s) && old.region().isOpen()) {
                next.put(s.id(), new Mapping(s, old.region(), old.view(), old.dirty()));
                continue;
            }
            if (old != null && old.view() != null) stale.add(old.view());
            HostRegion r = regionFor(s);
            RegionView v = r == null ? null : r.view(s.userspaceAddr() - r.address(), s.npages() << geometry.shift());
            // A MOVE keeps the dirty log (same memory, as KVM keeps the slot's bitmap); a new slot starts clean.
            DirtyBitmap d = old != null && old.slot().npages() == s.npages() ? old.dirty() : new DirtyBitmap(s.npages());
            next.put(s.id(), new Mapping(s, r, v, d));
        }
        for (Map.Entry<Integer, Mapping> e : mappings.entrySet()) {
            if (!next.containsKey(e.getKey()) && e.getValue().view() != null) stale.add(e.getValue().view());
        }
        mappings = next;
        Layout old = layout;
        LAYOUT.setVolatile(this, new Layout(set, next));
        if (old != null) old.retire(); // after publication: new accesses use the new layout
        for (RegionView v : stale) v.close();
    }

    private HostRegion regionFor(Memslot s) {
        long len = s.npages() << geometry.shift();
        for (HostRegion r : regions) {
            if (r.isOpen() && r.contains(s.userspaceAddr(), len)) return r;
        }
        return null;
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("guest memory is closed");
    }

    /**
     * Detaches from the memslots and closes every slot view (slices and in-flight accessors throw from now
     * on). The regions stay open; the memslots stay as they are. Idempotent.
     */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) return;
            closed = true;
            memslots.removeObserver(observer);
            Map<Integer, Mapping> old = mappings;
            mappings = new HashMap<>();
            Layout last = layout;
            LAYOUT.setVolatile(this, new Layout(MemslotSet.empty(geometry, addressSpace), mappings));
            last.retire();
            for (Mapping m : old.values()) if (m.view() != null) m.view().close();
        }
    }

    @Override
    public String toString() {
        Layout l = current();
        return "GuestMemory[as " + addressSpace + ", " + l.set.size() + " slots, gen " + l.set.generation() + "]";
    }
}
