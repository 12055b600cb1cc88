package io.guestmem.access;

import io.guestmem.access.ChunkWalk.Mode;
import io.guestmem.host.HostRegion;
import io.guestmem.host.RegionView;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotObserver;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.UseAfterClose;

import java.io.IOException;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.ScatteringByteChannel;
import java.nio.channels.WritableByteChannel;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.function.Function;

/**
 * Guest physical memory as a VMM's device models see it (rust-vmm {@code vm-memory}'s {@code GuestMemory} and
 * {@code Bytes}): reads, writes, typed little-endian accessors, structures, zero-copy dirty-tracked slices and
 * channel I/O at guest physical addresses, over the memslots of one address space of a {@link Memslots}, with
 * the VMM's own dirty log.
 *
 * <h2>Where the bytes are</h2>
 * Memslots hold raw host virtual addresses; this class never dereferences one. Each slot is backed by a
 * {@link HostRegion} {@linkplain #register registered} here whose range contains the slot's hva range
 * ({@link #addRam} registers and creates the slot in one call), through a {@link RegionView} of its own:
 * a segment that dies when the slot is deleted or moved, or when the region closes (once the transfers
 * holding it are out, see below). A use after any of these throws IllegalStateException, never touches
 * unmapped memory. A slot no registered region backs is {@link GuestMemoryException.Reason#NO_HOST_MEMORY}.
 *
 * <h2>The pieces</h2>
 * <ul>
 *   <li>{@link SlotTable}: the immutable slot table of one memslot set (per-slot views and dirty logs, the
 *       fast path's bucket table over one {@link io.guestmem.host.HostSpan}), rebuilt on every memslot change
 *       (a {@link MemslotObserver} on the writer) and every registration, from the {@link SlotMapping}s.</li>
 *   <li>{@link ChunkWalk}: the one walk of a gpa range across slots that every bulk operation uses (read,
 *       write, fill, channel transfers, their checks, slices of GUEST_MEMFD slots, {@link #markDirty}).</li>
 *   <li>{@link ChannelTransfer}: the channel calls of one transfer and its dirty marks; {@link LayoutGate}
 *       with {@link SlotHold}: the holds, the pins and the bounded wait of the changes (below).</li>
 *   <li>{@link DirtyHarvest}: the VMM's dirty log collected and merged ({@link #collectDirty},
 *       {@link #pagesToSend}); {@link VhostUserTable}: {@link #sharedRegions}.</li>
 *   <li>Here: the typed accessors, whose fast paths stay written out one per type (the JIT keeps the table
 *       in registers across a device's loop), the read-modify-write protocol with the table's retirement,
 *       and the life cycle.</li>
 * </ul>
 *
 * <h2>The lookup</h2>
 * A table cuts guest-physical space into equal power-of-two buckets no larger than the alignment of the
 * slots' boundaries, each bucket that lies in one plain RAM slot holding the offset from its gpas into one
 * segment shared by all such slots. An access that fits in one bucket is a read of the table (plain for the
 * plain flavour, so that a device's loop keeps it in registers), a subtraction and a shift, one load from a
 * dense long[] and the segment's bounds and liveness checks: no
 * search, no allocation, no lock, no syscall. Accesses that cross a bucket, hit a hole, an unbacked or a
 * GUEST_MEMFD slot take the checked path (the memslot lookup, then slot by slot) that still allocates nothing
 * for typed accessors. A table is retired (its segment closed) as soon as the next one is published; an
 * access that raced the change goes again on the new table.
 *
 * <h2>Typed accessors</h2>
 * Little-endian, u8 to u64, in four flavours:
 * <ul>
 *   <li>plain ({@code readU32}, {@code writeU64}, ...): any gpa, crossing slots allowed; no ordering.</li>
 *   <li>opaque ({@code readU32Volatile}, {@code writeU16Volatile}, ...): each access happens, untorn and in
 *       program order for that location, as a guest vCPU or another thread may be writing it; no ordering
 *       with other locations.</li>
 *   <li>acquire/release ({@code readU16Acquire}, {@code writeU16Release}, ...): an acquire read keeps every
 *       later access after it, a release write every earlier access before it, so a release of a ring index
 *       publishes the entries written before it to a thread that acquires the index (virtio's "write the
 *       entry, then the index" without a separate fence).</li>
 *   <li>atomic ({@code compareAndSetU32}, {@code getAndAddU64}, ...): a locked read-modify-write.</li>
 * </ul>
 * All but plain require natural alignment (gpa a multiple of the size) and throw
 * {@link MisalignedAccessException} ({@link GuestMemoryException.Reason#MISALIGNED}) otherwise: a
 * misaligned access is not single-copy atomic on the hardware (on x86 a split lock, on arm64 a fault), and
 * since slots are page aligned an aligned access never crosses a slot. u8/u16 come back zero-extended in an
 * int, u32 as the int's bits ({@link Integer#toUnsignedLong} for the value), u64 as a long. Every flavour
 * serves a plain RAM slot through the bucket table; plain reads the table plainly, the others with acquire
 * ordering (see {@code current()}).
 *
 * <h2>Slices and structures</h2>
 * {@link #slice(long, long)} is a {@link GuestSlice}: a zero-copy window inside one slot with the same typed
 * accessors at offsets, bulk copies, fill and channel I/O, whose writes mark the dirty log; it dies with its
 * slot (IllegalStateException). Its {@link GuestSlice#rawSegment() raw segment} is the one untracked way in.
 * {@link #struct}, {@link #readStruct} and {@link #writeStruct} access a structure described by an FFM
 * {@link MemoryLayout} (little-endian members only), inside one slot, tracked as slices are
 * ({@link io.guestmem.virtio.VirtqDescriptor} is one).
 *
 * <h2>Errors</h2>
 * Bulk reads and writes copy up to the first byte they may not touch and throw a {@link GuestMemoryException}
 * naming that gpa and the bytes done: {@link PartialAccessException} (a hole, an unbacked slot),
 * {@link ReadOnlySlotException}, {@link PrivateMemoryException}. Channel transfers check the whole range
 * first (bytes read from a socket cannot be put back) and only then transfer.
 *
 * <h2>Channel transfers</h2>
 * {@link #readFrom(long, ReadableByteChannel, long)} and {@link #writeTo(long, WritableByteChannel, long)}
 * make exactly one channel call, on direct buffers over guest RAM (no intermediate copy): one scattering
 * read or gathering write over every part of a range that spans slots (one readv/writev) when the channel is a
 * {@link ScatteringByteChannel}/{@link GatheringByteChannel}, else one call on the first part. A blocking
 * receive therefore returns one datagram, tap frame or whatever a pipe holds now, never two merged, as a
 * {@code read(2)} would. {@link #readFullyFrom} and {@link #writeFullyTo} loop until the range is done, end of
 * stream, or a non-blocking channel has no more now. The positional {@link FileChannel} variants are a block
 * device's request: the whole range unless end of file comes first. A transfer into guest memory marks the
 * pages it stored into dirty even when the channel throws midway, before the exception propagates.
 *
 * <h2>Holds, pins and changes of the layout</h2>
 * A channel transfer <em>holds</em> the slots of its range for the whole I/O call (a per-slot counter, kept
 * across FLAGS_ONLY changes like the dirty bitmap): the JDK keeps a view's memory acquired during a system
 * call, and a blocking read may last forever, so a view can only die once its transfers are out. A memslot
 * delete or move of a held slot, and the close of a {@link HostRegion} backing one, therefore wait for its
 * holds to end (KVM's {@code synchronize_srcu} on the memslots); while they wait, new transfers on the slot
 * wait for the outcome and then start again on the table then current. A {@link #pin()} holds the whole
 * layout: while one is open, every create, delete or move in this address space, the close of a region that
 * backs a slot and {@link #close()} wait for the pins to close (FLAGS_ONLY changes and plain accesses never
 * wait). Each wait is bounded by the {@linkplain #setDrainTimeout drain timeout} (1 s by default) and ends,
 * if the users did not let go, in {@link SlotBusyException} (EBUSY, naming the slots, the transfers and the
 * pins): a memslot change is vetoed (nothing published), a region stays open and mapped, this memory stays
 * open. So a change is all or nothing, a region is never unmapped under an I/O call, and once a change went
 * through, the old views are closed (slices of a removed slot throw IllegalStateException). Plain accessors
 * and slices neither hold nor wait. A slice's own channel calls ({@link GuestSlice#readFrom},
 * {@link GuestSlice#writeTo}) hold its slot as transfers do. A caller's own I/O call on a slice's
 * {@linkplain GuestSlice#rawSegment raw segment} is not held: a change that takes that view away during the
 * call is published, but the view cannot be closed then, so the change's caller gets the JDK's
 * IllegalStateException after the publication, and the view stays open.
 *
 * <h2>Dirty tracking</h2>
 * Every write through this class, its slices and structures (bulk, fill, typed in every flavour, atomic,
 * structure fields, channel reads into guest memory: the bytes actually read) marks the pages it touched in
 * the slot's {@link DirtyBitmap} after storing them; {@link #collectDirty(int)} returns and clears them,
 * merged with an external tracker when given. Writes the API cannot see (through
 * {@link GuestSlice#rawSegment()}, a native call, another process mapping the memory) need
 * {@link #markDirty}.
 *
 * <p>Thread-safe. {@link #close()} detaches from the memslots and invalidates every slot view; it does not
 * close the regions (their owner does). From then on every access (also of zero bytes) and every slice or
 * dirty-log lookup throws IllegalStateException ({@code guest memory is closed: readU64()}): close publishes
 * a closed table with no slot, so the fast path's cost is unchanged and its miss path says why.
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

    private final Memslots memslots;
    private final int addressSpace;
    private final PageGeometry geometry;
    private final MemslotObserver observer = new Observer();
    private final List<HostRegion> regions = new ArrayList<>();       // guarded by this
    private SlotTable layout; // read plainly on the fast paths (see current()), published with LAYOUT
    private final PageAccessPolicy policy;                            // given at construction
    private final DirtyLogging dirtyLogging;                          // given at construction
    private final boolean logging;                                    // dirtyLogging == ON: the fast writes mark
    private final List<HostRegion> closingRegions = new ArrayList<>(); // guarded by this: no new views from these
    private final Map<HostRegion, LayoutGate.Barrier> regionBarriers = new HashMap<>(); // guarded by this
    private final LayoutGate gate = new LayoutGate();
    private final HostRegion.CloseGuard regionGuard = new HostRegion.CloseGuard() {
        @Override
        public void beforeClose(HostRegion region) {
            regionClosing(region);
        }

        @Override
        public void closeAborted(HostRegion region) {
            regionCloseAborted(region);
        }
    };
    private volatile boolean closed;                                   // written under this

    private static final VarHandle LAYOUT;
    static {
        try {
            LAYOUT = MethodHandles.lookup().findVarHandle(GuestMemory.class, "layout", SlotTable.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    /**
     * The current table, read with acquire ordering: what every path uses that may refuse an access (not
     * RAM, read-only, private) or that goes through a slot's own view, so that it never refuses or serves
     * on a table a finished memslot change replaced.
     *
     * <p>The fast paths of the typed (plain, volatile, acquire/release) and byte[] accessors instead read
     * {@code layout} plainly, so that the JIT can keep it (and the bucket table and segment it holds) in
     * registers across a device model's loop: a read then costs the arithmetic, one table load and the access
     * itself. That is sound because a fast path only ever serves a bucket through the table's span, and a
     * table's span is closed as soon as the next one is published, unless the next one only added a slot (then
     * the old table reaches nothing that went away, and misses the new slot into the checked path): a thread
     * still using an old table gets IllegalStateException from the closed span (the
     * JDK's close handshake deoptimizes compiled frames that hoisted the liveness check), goes to
     * {@link #retired}, which re-reads here, and retries; and a fast-path miss goes to a slow path that
     * starts from here.
     */
    private SlotTable current() {
        return (SlotTable) LAYOUT.getAcquire(this);
    }


    /** Guest memory over address space 0 of {@code memslots}, every page accessible (no private memory). */
    public GuestMemory(Memslots memslots) {
        this(memslots, 0, PageAccessPolicy.ALLOW_ALL);
    }

    /**
     * Guest memory over address space {@code addressSpace} of {@code memslots}; {@code policy} is asked
     * about every page of a slot it {@linkplain PageAccessPolicy#governs governs} before it is touched.
     */
    public GuestMemory(Memslots memslots, int addressSpace, PageAccessPolicy policy) {
        this(memslots, addressSpace, policy, DirtyLogging.ON);
    }

    /**
     * Like {@link #GuestMemory(Memslots, int, PageAccessPolicy)}, with the VMM's dirty log {@code dirtyLogging}
     * for the life of this memory: {@link DirtyLogging#OFF} makes a write cost no fence and no mark, and the
     * dirty-log queries ({@link #collectDirty}, {@link #pagesToSend}, a {@link DirtyBitmap}'s) throw.
     */
    public GuestMemory(Memslots memslots, int addressSpace, PageAccessPolicy policy, DirtyLogging dirtyLogging) {
        this.dirtyLogging = Objects.requireNonNull(dirtyLogging, "dirtyLogging");
        this.logging = dirtyLogging == DirtyLogging.ON;
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

    /**
     * Makes {@code region} the backing of every slot (present or future) whose hva range lies inside it. When
     * the region closes, the slots it backed lose their views (stale slices throw) and become
     * {@link GuestMemoryException.Reason#NO_HOST_MEMORY}; that close first waits for the channel transfers
     * holding those slots and for open pins, at most the drain timeout, and otherwise fails with
     * {@link SlotBusyException} from {@link HostRegion#close()}, the region still mapped and serving.
     * Registering does not wait for pins: it only gives host memory to slots that had none. Registering twice
     * does nothing.
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
        region.addCloseGuard(regionGuard);
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
     * observers (a KVM mirror) see the slot. A create changes the layout: it waits for open {@link Pin}s (at
     * most the drain timeout, else {@link SlotBusyException}).
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

    /**
     * Deletes memslot {@code slotId} (its view dies: slices of it throw from then on). Waits for the channel
     * transfers holding the slot and for open pins, at most the drain timeout, else {@link SlotBusyException}
     * and the slot stays.
     */
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
        if (len == 0) {
            current().checkOpen("read");
            return;
        }
        final SlotTable l = layout;
        final long o = l.fastOff(gpa, len, false);
        if (o != SlotTable.NONE) {
            try {
                MemorySegment.copy(l.all, ValueLayout.JAVA_BYTE, gpa + o, dst, off, len);
                return;
            } catch (IllegalStateException e) {
                retired(l, e); // the table changed under us: go again on the new one
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
        if (len == 0) {
            current().checkOpen("write");
            return;
        }
        final SlotTable l = layout;
        final long o = l.fastOff(gpa, len, true);
        if (o != SlotTable.NONE) {
            try {
                MemorySegment.copy(src, off, l.all, ValueLayout.JAVA_BYTE, gpa + o, len);
            } catch (IllegalStateException e) {
                retired(l, e);
                write(gpa, src, off, len);
                return;
            }
            if (logging) l.markFast(gpa, len);
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
        ChunkWalk.walk(current(), policy, gpa, len, Mode.WRITE, "fill", value, ChunkWalk.FILL);
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

    /** A copy between guest memory at {@code gpa} and {@code other}, through the walk. */
    private void copy(SlotTable l, long gpa, MemorySegment other, boolean write, String op) {
        if (write) ChunkWalk.walk(l, policy, gpa, other.byteSize(), Mode.WRITE, op, other, ChunkWalk.COPY_IN);
        else ChunkWalk.walk(l, policy, gpa, other.byteSize(), Mode.READ, op, other, ChunkWalk.COPY_OUT);
    }

    /**
     * Called when an access through table {@code l} threw IllegalStateException: returns when {@code l} is no
     * longer the current table (it was retired, its segments closed, between our read of it and the access:
     * the caller goes again on the new one), else rethrows.
     */
    private void retired(SlotTable l, IllegalStateException e) {
        if (current() == l) throw e;
    }

    /**
     * The current table, held open for one read-modify-write: {@link SlotTable#retire} does not close it until
     * {@link #exitRmw}. Unlike plain loads and stores, an atomic update is never retried after an
     * IllegalStateException, because the update may already have happened (Dekker-style: we count ourselves in,
     * then check {@code retiring}; retire sets it, then waits for the count).
     */
    private SlotTable enterRmw() {
        while (true) {
            SlotTable l = current();
            l.rmwInFlight.incrementAndGet();
            if (!l.retiring) return l;
            l.rmwInFlight.decrementAndGet();
            if (current() == l) throw new IllegalStateException("guest memory is closed"); // never published after retire
        }
    }

    private static void exitRmw(SlotTable l) {
        l.rmwInFlight.decrementAndGet();
    }

    // ------------------------------------------------------------------------------------------ typed: plain

    /** The byte at {@code gpa}, zero-extended. */
    public int readU8(long gpa) {
        final SlotTable l = layout;
        final long o = l.fastOff(gpa, 1, false);
        if (o != SlotTable.NONE) {
            try {
                return Byte.toUnsignedInt(l.all.get(ValueLayout.JAVA_BYTE, gpa + o));
            } catch (IllegalStateException e) {
                retired(l, e);
                return readU8(gpa);
            }
        }
        return (int) readSlow(gpa, 1, "readU8");
    }

    /** The little-endian u16 at {@code gpa} (any alignment), zero-extended. */
    public int readU16(long gpa) {
        final SlotTable l = layout;
        final long o = l.fastOff(gpa, 2, false);
        if (o != SlotTable.NONE) {
            try {
                return Short.toUnsignedInt(l.all.get(U16, gpa + o));
            } catch (IllegalStateException e) {
                retired(l, e);
                return readU16(gpa);
            }
        }
        return (int) readSlow(gpa, 2, "readU16");
    }

    /** The little-endian u32 at {@code gpa} (any alignment), as an int's bits. */
    public int readU32(long gpa) {
        final SlotTable l = layout;
        final long o = l.fastOff(gpa, 4, false);
        if (o != SlotTable.NONE) {
            try {
                return l.all.get(U32, gpa + o);
            } catch (IllegalStateException e) {
                retired(l, e);
                return readU32(gpa);
            }
        }
        return (int) readSlow(gpa, 4, "readU32");
    }

    /** The little-endian u64 at {@code gpa} (any alignment). */
    public long readU64(long gpa) {
        final SlotTable l = layout;
        final long o = l.fastOff(gpa, 8, false);
        if (o != SlotTable.NONE) {
            try {
                return l.all.get(U64, gpa + o);
            } catch (IllegalStateException e) {
                retired(l, e);
                return readU64(gpa);
            }
        }
        return readSlow(gpa, 8, "readU64");
    }

    /** Writes the low byte of {@code value} at {@code gpa}. */
    public void writeU8(long gpa, int value) {
        final SlotTable l = layout;
        final long o = l.fastOff(gpa, 1, true);
        if (o != SlotTable.NONE) {
            try {
                l.all.set(ValueLayout.JAVA_BYTE, gpa + o, (byte) value);
            } catch (IllegalStateException e) {
                retired(l, e);
                writeU8(gpa, value);
                return;
            }
            if (logging) l.markFast(gpa, 1);
            return;
        }
        writeSlow(gpa, 1, value, "writeU8");
    }

    /** Writes the low 16 bits of {@code value}, little-endian, at {@code gpa} (any alignment). */
    public void writeU16(long gpa, int value) {
        final SlotTable l = layout;
        final long o = l.fastOff(gpa, 2, true);
        if (o != SlotTable.NONE) {
            try {
                l.all.set(U16, gpa + o, (short) value);
            } catch (IllegalStateException e) {
                retired(l, e);
                writeU16(gpa, value);
                return;
            }
            if (logging) l.markFast(gpa, 2);
            return;
        }
        writeSlow(gpa, 2, value, "writeU16");
    }

    /** Writes {@code value}, little-endian, at {@code gpa} (any alignment). */
    public void writeU32(long gpa, int value) {
        final SlotTable l = layout;
        final long o = l.fastOff(gpa, 4, true);
        if (o != SlotTable.NONE) {
            try {
                l.all.set(U32, gpa + o, value);
            } catch (IllegalStateException e) {
                retired(l, e);
                writeU32(gpa, value);
                return;
            }
            if (logging) l.markFast(gpa, 4);
            return;
        }
        writeSlow(gpa, 4, value, "writeU32");
    }

    /** Writes {@code value}, little-endian, at {@code gpa} (any alignment). */
    public void writeU64(long gpa, long value) {
        final SlotTable l = layout;
        final long o = l.fastOff(gpa, 8, true);
        if (o != SlotTable.NONE) {
            try {
                l.all.set(U64, gpa + o, value);
            } catch (IllegalStateException e) {
                retired(l, e);
                writeU64(gpa, value);
                return;
            }
            if (logging) l.markFast(gpa, 8);
            return;
        }
        writeSlow(gpa, 8, value, "writeU64");
    }

    /**
     * Byte by byte through the checked path: crossing slots, GUEST_MEMFD pages, errors. Not the
     * {@link ChunkWalk}: at most 8 bytes, and without a capturing lambda it stays allocation-free.
     */
    private long readSlow(long gpa, int n, String op) {
        SlotTable l = current();
        long v = 0;
        for (int k = 0; k < n; k++) {
            long g = gpa + k;
            int i = l.checkedIndex(policy, g, k, false, op);
            v |= Byte.toUnsignedLong(l.any(i).get(ValueLayout.JAVA_BYTE, g - l.base(i))) << (8 * k);
        }
        return v;
    }

    /**
     * Checks every byte first (the walk's check), so that a typed write is all or nothing (a u64 half-written
     * across a hole would be worse than none), then writes byte by byte.
     */
    private void writeSlow(long gpa, int n, long value, String op) {
        SlotTable l = current();
        ChunkWalk.check(l, policy, gpa, n, Mode.WRITE, op);
        for (int k = 0; k < n; k++) {
            long g = gpa + k;
            int i = l.checkedIndex(policy, g, k, true, op);
            long o = g - l.base(i);
            l.any(i).set(ValueLayout.JAVA_BYTE, o, (byte) (value >>> (8 * k)));
            l.dirty(i).mark(o >>> l.shift);
        }
    }

    // ------------------------------------------------------------------------------------------ typed: volatile (opaque)

    /** The byte at {@code gpa} with opaque ordering, zero-extended. */
    public int readU8Volatile(long gpa) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 1, false);
        if (o != SlotTable.NONE) {
            try {
                return Byte.toUnsignedInt((byte) A8.getOpaque(f.all, gpa + o));
            } catch (IllegalStateException e) {
                retired(f, e);
            }
        }
        return readU8VolatileChecked(gpa);
    }

    private int readU8VolatileChecked(long gpa) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 1, false, "readU8Volatile");
        try {
            return Byte.toUnsignedInt((byte) A8.getOpaque(l.segment(h), l.offset(h, gpa)));
        } catch (IllegalStateException e) {
            retired(l, e); // the layout changed under us: go again on the new one
            return readU8Volatile(gpa);
        }
    }

    /** The u16 at {@code gpa} (2-byte aligned) with opaque ordering, zero-extended. */
    public int readU16Volatile(long gpa) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 2, false);
        if (o != SlotTable.NONE) {
            try {
                return Short.toUnsignedInt((short) A16.getOpaque(f.all, gpa + o));
            } catch (IllegalStateException e) {
                retired(f, e);
            }
        }
        return readU16VolatileChecked(gpa);
    }

    private int readU16VolatileChecked(long gpa) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 2, false, "readU16Volatile");
        try {
            return Short.toUnsignedInt((short) A16.getOpaque(l.segment(h), l.offset(h, gpa)));
        } catch (IllegalStateException e) {
            retired(l, e); // the layout changed under us: go again on the new one
            return readU16Volatile(gpa);
        }
    }

    /** The u32 at {@code gpa} (4-byte aligned) with opaque ordering. */
    public int readU32Volatile(long gpa) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 4, false);
        if (o != SlotTable.NONE) {
            try {
                return (int) A32.getOpaque(f.all, gpa + o);
            } catch (IllegalStateException e) {
                retired(f, e);
            }
        }
        return readU32VolatileChecked(gpa);
    }

    private int readU32VolatileChecked(long gpa) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 4, false, "readU32Volatile");
        try {
            return (int) A32.getOpaque(l.segment(h), l.offset(h, gpa));
        } catch (IllegalStateException e) {
            retired(l, e); // the layout changed under us: go again on the new one
            return readU32Volatile(gpa);
        }
    }

    /** The u64 at {@code gpa} (8-byte aligned) with opaque ordering. */
    public long readU64Volatile(long gpa) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 8, false);
        if (o != SlotTable.NONE) {
            try {
                return (long) A64.getOpaque(f.all, gpa + o);
            } catch (IllegalStateException e) {
                retired(f, e);
            }
        }
        return readU64VolatileChecked(gpa);
    }

    private long readU64VolatileChecked(long gpa) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 8, false, "readU64Volatile");
        try {
            return (long) A64.getOpaque(l.segment(h), l.offset(h, gpa));
        } catch (IllegalStateException e) {
            retired(l, e); // the layout changed under us: go again on the new one
            return readU64Volatile(gpa);
        }
    }

    /** Writes a byte with opaque ordering. */
    public void writeU8Volatile(long gpa, int value) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 1, true);
        if (o == SlotTable.NONE) {
            writeU8VolatileChecked(gpa, value);
            return;
        }
        try {
            A8.setOpaque(f.all, gpa + o, (byte) value);
        } catch (IllegalStateException e) {
            retired(f, e);
            writeU8VolatileChecked(gpa, value);
            return;
        }
        if (logging) f.markFast(gpa, 1);
    }

    private void writeU8VolatileChecked(long gpa, int value) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 1, true, "writeU8Volatile");
        try {
            A8.setOpaque(l.segment(h), l.offset(h, gpa), (byte) value);
        } catch (IllegalStateException e) {
            retired(l, e);
            writeU8Volatile(gpa, value);
            return;
        }
        l.mark(h, gpa);
    }

    /** Writes a u16 (2-byte aligned) with opaque ordering. */
    public void writeU16Volatile(long gpa, int value) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 2, true);
        if (o == SlotTable.NONE) {
            writeU16VolatileChecked(gpa, value);
            return;
        }
        try {
            A16.setOpaque(f.all, gpa + o, (short) value);
        } catch (IllegalStateException e) {
            retired(f, e);
            writeU16VolatileChecked(gpa, value);
            return;
        }
        if (logging) f.markFast(gpa, 2);
    }

    private void writeU16VolatileChecked(long gpa, int value) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 2, true, "writeU16Volatile");
        try {
            A16.setOpaque(l.segment(h), l.offset(h, gpa), (short) value);
        } catch (IllegalStateException e) {
            retired(l, e);
            writeU16Volatile(gpa, value);
            return;
        }
        l.mark(h, gpa);
    }

    /** Writes a u32 (4-byte aligned) with opaque ordering. */
    public void writeU32Volatile(long gpa, int value) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 4, true);
        if (o == SlotTable.NONE) {
            writeU32VolatileChecked(gpa, value);
            return;
        }
        try {
            A32.setOpaque(f.all, gpa + o, value);
        } catch (IllegalStateException e) {
            retired(f, e);
            writeU32VolatileChecked(gpa, value);
            return;
        }
        if (logging) f.markFast(gpa, 4);
    }

    private void writeU32VolatileChecked(long gpa, int value) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 4, true, "writeU32Volatile");
        try {
            A32.setOpaque(l.segment(h), l.offset(h, gpa), value);
        } catch (IllegalStateException e) {
            retired(l, e);
            writeU32Volatile(gpa, value);
            return;
        }
        l.mark(h, gpa);
    }

    /** Writes a u64 (8-byte aligned) with opaque ordering. */
    public void writeU64Volatile(long gpa, long value) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 8, true);
        if (o == SlotTable.NONE) {
            writeU64VolatileChecked(gpa, value);
            return;
        }
        try {
            A64.setOpaque(f.all, gpa + o, value);
        } catch (IllegalStateException e) {
            retired(f, e);
            writeU64VolatileChecked(gpa, value);
            return;
        }
        if (logging) f.markFast(gpa, 8);
    }

    private void writeU64VolatileChecked(long gpa, long value) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 8, true, "writeU64Volatile");
        try {
            A64.setOpaque(l.segment(h), l.offset(h, gpa), value);
        } catch (IllegalStateException e) {
            retired(l, e);
            writeU64Volatile(gpa, value);
            return;
        }
        l.mark(h, gpa);
    }

    // ------------------------------------------------------------------------------------------ typed: acquire/release

    /** The byte at {@code gpa} with acquire ordering (no later access moves before it), zero-extended. */
    public int readU8Acquire(long gpa) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 1, false);
        if (o != SlotTable.NONE) {
            try {
                return Byte.toUnsignedInt((byte) A8.getAcquire(f.all, gpa + o));
            } catch (IllegalStateException e) {
                retired(f, e);
            }
        }
        return readU8AcquireChecked(gpa);
    }

    private int readU8AcquireChecked(long gpa) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 1, false, "readU8Acquire");
        try {
            return Byte.toUnsignedInt((byte) A8.getAcquire(l.segment(h), l.offset(h, gpa)));
        } catch (IllegalStateException e) {
            retired(l, e); // the layout changed under us: go again on the new one
            return readU8Acquire(gpa);
        }
    }

    /** The u16 at {@code gpa} (2-byte aligned) with acquire ordering, zero-extended. */
    public int readU16Acquire(long gpa) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 2, false);
        if (o != SlotTable.NONE) {
            try {
                return Short.toUnsignedInt((short) A16.getAcquire(f.all, gpa + o));
            } catch (IllegalStateException e) {
                retired(f, e);
            }
        }
        return readU16AcquireChecked(gpa);
    }

    private int readU16AcquireChecked(long gpa) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 2, false, "readU16Acquire");
        try {
            return Short.toUnsignedInt((short) A16.getAcquire(l.segment(h), l.offset(h, gpa)));
        } catch (IllegalStateException e) {
            retired(l, e);
            return readU16Acquire(gpa);
        }
    }

    /** The u32 at {@code gpa} (4-byte aligned) with acquire ordering. */
    public int readU32Acquire(long gpa) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 4, false);
        if (o != SlotTable.NONE) {
            try {
                return (int) A32.getAcquire(f.all, gpa + o);
            } catch (IllegalStateException e) {
                retired(f, e);
            }
        }
        return readU32AcquireChecked(gpa);
    }

    private int readU32AcquireChecked(long gpa) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 4, false, "readU32Acquire");
        try {
            return (int) A32.getAcquire(l.segment(h), l.offset(h, gpa));
        } catch (IllegalStateException e) {
            retired(l, e);
            return readU32Acquire(gpa);
        }
    }

    /** The u64 at {@code gpa} (8-byte aligned) with acquire ordering. */
    public long readU64Acquire(long gpa) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 8, false);
        if (o != SlotTable.NONE) {
            try {
                return (long) A64.getAcquire(f.all, gpa + o);
            } catch (IllegalStateException e) {
                retired(f, e);
            }
        }
        return readU64AcquireChecked(gpa);
    }

    private long readU64AcquireChecked(long gpa) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 8, false, "readU64Acquire");
        try {
            return (long) A64.getAcquire(l.segment(h), l.offset(h, gpa));
        } catch (IllegalStateException e) {
            retired(l, e);
            return readU64Acquire(gpa);
        }
    }

    /** Writes a byte with release ordering (no earlier access moves after it). */
    public void writeU8Release(long gpa, int value) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 1, true);
        if (o == SlotTable.NONE) {
            writeU8ReleaseChecked(gpa, value);
            return;
        }
        try {
            A8.setRelease(f.all, gpa + o, (byte) value);
        } catch (IllegalStateException e) {
            retired(f, e);
            writeU8ReleaseChecked(gpa, value);
            return;
        }
        if (logging) f.markFast(gpa, 1);
    }

    private void writeU8ReleaseChecked(long gpa, int value) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 1, true, "writeU8Release");
        try {
            A8.setRelease(l.segment(h), l.offset(h, gpa), (byte) value);
        } catch (IllegalStateException e) {
            retired(l, e); // a store may go again: it writes the same value
            writeU8Release(gpa, value);
            return;
        }
        l.mark(h, gpa);
    }

    /** Writes a u16 (2-byte aligned) with release ordering. */
    public void writeU16Release(long gpa, int value) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 2, true);
        if (o == SlotTable.NONE) {
            writeU16ReleaseChecked(gpa, value);
            return;
        }
        try {
            A16.setRelease(f.all, gpa + o, (short) value);
        } catch (IllegalStateException e) {
            retired(f, e);
            writeU16ReleaseChecked(gpa, value);
            return;
        }
        if (logging) f.markFast(gpa, 2);
    }

    private void writeU16ReleaseChecked(long gpa, int value) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 2, true, "writeU16Release");
        try {
            A16.setRelease(l.segment(h), l.offset(h, gpa), (short) value);
        } catch (IllegalStateException e) {
            retired(l, e);
            writeU16Release(gpa, value);
            return;
        }
        l.mark(h, gpa);
    }

    /** Writes a u32 (4-byte aligned) with release ordering. */
    public void writeU32Release(long gpa, int value) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 4, true);
        if (o == SlotTable.NONE) {
            writeU32ReleaseChecked(gpa, value);
            return;
        }
        try {
            A32.setRelease(f.all, gpa + o, value);
        } catch (IllegalStateException e) {
            retired(f, e);
            writeU32ReleaseChecked(gpa, value);
            return;
        }
        if (logging) f.markFast(gpa, 4);
    }

    private void writeU32ReleaseChecked(long gpa, int value) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 4, true, "writeU32Release");
        try {
            A32.setRelease(l.segment(h), l.offset(h, gpa), value);
        } catch (IllegalStateException e) {
            retired(l, e);
            writeU32Release(gpa, value);
            return;
        }
        l.mark(h, gpa);
    }

    /** Writes a u64 (8-byte aligned) with release ordering. */
    public void writeU64Release(long gpa, long value) {
        final SlotTable f = layout; // the plain fast path (see current()); anything else goes to the checked one
        final long o = f.fastOffAligned(gpa, 8, true);
        if (o == SlotTable.NONE) {
            writeU64ReleaseChecked(gpa, value);
            return;
        }
        try {
            A64.setRelease(f.all, gpa + o, value);
        } catch (IllegalStateException e) {
            retired(f, e);
            writeU64ReleaseChecked(gpa, value);
            return;
        }
        if (logging) f.markFast(gpa, 8);
    }

    private void writeU64ReleaseChecked(long gpa, long value) {
        final SlotTable l = current();
        final int h = l.aligned(policy, gpa, 8, true, "writeU64Release");
        try {
            A64.setRelease(l.segment(h), l.offset(h, gpa), value);
        } catch (IllegalStateException e) {
            retired(l, e);
            writeU64Release(gpa, value);
            return;
        }
        l.mark(h, gpa);
    }

    // ------------------------------------------------------------------------------------------ typed: atomic

    /** Atomically sets the u32 at {@code gpa} (4-byte aligned) to {@code update} if it is {@code expect}. */
    public boolean compareAndSetU32(long gpa, int expect, int update) {
        final SlotTable l = enterRmw();
        try {
            final int h = l.aligned(policy, gpa, 4, true, "compareAndSetU32");
            boolean ok = A32.compareAndSet(l.segment(h), l.offset(h, gpa), expect, update);
            if (ok) l.mark(h, gpa);
            return ok;
        } finally {
            exitRmw(l);
        }
    }

    /** Atomically sets the u64 at {@code gpa} (8-byte aligned) to {@code update} if it is {@code expect}. */
    public boolean compareAndSetU64(long gpa, long expect, long update) {
        final SlotTable l = enterRmw();
        try {
            final int h = l.aligned(policy, gpa, 8, true, "compareAndSetU64");
            boolean ok = A64.compareAndSet(l.segment(h), l.offset(h, gpa), expect, update);
            if (ok) l.mark(h, gpa);
            return ok;
        } finally {
            exitRmw(l);
        }
    }

    /** Atomically adds {@code delta} to the u32 at {@code gpa} (4-byte aligned, wrapping); returns the old value. */
    public int getAndAddU32(long gpa, int delta) {
        final SlotTable l = enterRmw();
        try {
            final int h = l.aligned(policy, gpa, 4, true, "getAndAddU32");
            int old = (int) A32.getAndAdd(l.segment(h), l.offset(h, gpa), delta);
            l.mark(h, gpa);
            return old;
        } finally {
            exitRmw(l);
        }
    }

    /** Atomically adds {@code delta} to the u64 at {@code gpa} (8-byte aligned, wrapping); returns the old value. */
    public long getAndAddU64(long gpa, long delta) {
        final SlotTable l = enterRmw();
        try {
            final int h = l.aligned(policy, gpa, 8, true, "getAndAddU64");
            long old = (long) A64.getAndAdd(l.segment(h), l.offset(h, gpa), delta);
            l.mark(h, gpa);
            return old;
        } finally {
            exitRmw(l);
        }
    }
    // ------------------------------------------------------------------------------------------ slices

    /**
     * A zero-copy, dirty-tracked {@link GuestSlice} over {@code [gpa, gpa + len)}, which must lie in one slot
     * (else a {@link PartialAccessException} naming the first gpa past the slot, with 0 bytes done). Its
     * writes mark the slot's {@link DirtyBitmap}; it refuses writes for a READONLY slot. It stops working
     * (IllegalStateException, from any thread) when the slot is deleted or moved, when its region closes, or
     * when this GuestMemory closes. For a GUEST_MEMFD slot the policy is asked for every page now, and the
     * caller must not keep the slice across a conversion to private. {@code len} 0 gives an empty slice,
     * wherever {@code gpa} is (a zero-byte access touches nothing, as a zero-byte {@link #read} does).
     * {@link GuestSlice#rawSegment()} is the untracked MemorySegment.
     */
    public GuestSlice slice(long gpa, long len) {
        if (len < 0) throw new IllegalArgumentException("slice length " + len);
        SlotTable l = current();
        if (len == 0) {
            l.checkOpen("slice");
            return GuestSlice.empty(gpa);
        }
        return slotSlice(l, gpa, len, "slice");
    }

    /** The slice of {@code [gpa, gpa + len)} ({@code len >= 1}) in one slot of {@code l}, checked as {@link #slice} says. */
    private GuestSlice slotSlice(SlotTable l, long gpa, long len, String op) {
        int i = l.checkedIndex(policy, gpa, 0, false, op);
        long o = gpa - l.base(i);
        Memslot s = l.mapping(i).slot();
        if (len > l.size(i) - o) {
            long end = l.base(i) + l.size(i);
            throw new PartialAccessException(GuestMemoryException.Reason.NOT_RAM, op + "(" + Fmt.hex(gpa) + ", " + len + ")",
                    end, 0, s.id(), "a " + op + " must stay inside slot " + s.id() + " which ends there");
        }
        if (l.read(i) == null) ChunkWalk.check(l, policy, gpa, len, Mode.READ, op); // GUEST_MEMFD: every page
        MemorySegment view = l.any(i);
        String readOnly = s.readOnly() ? "slot " + s.id() + " is READONLY"
                : view.isReadOnly() ? "slot " + s.id() + " is backed by read-only host memory" : null;
        MemorySegment seg = view.asSlice(o, len);
        return new GuestSlice(readOnly != null ? seg.asReadOnly() : seg, gpa, l.dirty(i), o, l.shift, s.id(), readOnly,
                gate, l.mapping(i).hold());
    }

    /**
     * Marks {@code [gpa, gpa + len)} dirty, for writes the API did not see (through
     * {@link GuestSlice#rawSegment()}, a native call, another process); holes are an error.
     */
    public void markDirty(long gpa, long len) {
        ChunkWalk.walk(current(), policy, gpa, len, Mode.MARK, "markDirty", null, ChunkWalk.WHOLE);
    }

    // ------------------------------------------------------------------------------------------ structures

    /**
     * A live, dirty-tracked view of the structure {@code layout} at {@code gpa} (the Java counterpart of
     * vm-memory's {@code ByteValued} objects): its fields are read and written in guest memory through
     * {@link GuestStruct.Field}s. The structure must lie in one slot (else {@link PartialAccessException}
     * with 0 bytes done) and be little-endian: a member with big-endian byte order, or a host address, is an
     * IllegalArgumentException (guest memory holds little-endian data on every architecture guestmem runs
     * on, and as virtio 1.x specifies it). The view lives as a {@link #slice} does.
     */
    public GuestStruct struct(long gpa, MemoryLayout layout) {
        GuestStruct.checkLayout(layout);
        return new GuestStruct(slotSlice(current(), gpa, layout.byteSize(), "struct"), layout);
    }

    /**
     * A copy of the structure {@code layout} at {@code gpa}, checked as {@link #struct} says, in a heap
     * segment aligned for the layout, so that the layout's own var handles
     * ({@code layout.varHandle(PathElement.groupElement("addr"))}) read its fields. A read racing a change of
     * its slot goes again on the new table.
     */
    public MemorySegment readStruct(long gpa, MemoryLayout layout) {
        GuestStruct.checkLayout(layout);
        MemorySegment copy = GuestStruct.allocate(layout);
        while (true) {
            SlotTable l = current();
            try {
                slotSlice(l, gpa, copy.byteSize(), "readStruct").read(0, copy);
                return copy;
            } catch (IllegalStateException e) {
                retired(l, e); // the slot changed between the lookup and the copy
            }
        }
    }

    /**
     * Writes {@code value} (exactly {@code layout.byteSize()} bytes, e.g. made with the layout's var handles)
     * as the structure {@code layout} at {@code gpa}, checked as {@link #struct} says: all or nothing, and
     * dirty-tracked.
     */
    public void writeStruct(long gpa, MemoryLayout layout, MemorySegment value) {
        GuestStruct.checkLayout(layout);
        if (value.byteSize() != layout.byteSize())
            throw new IllegalArgumentException(value.byteSize() + " bytes for " + layout + " of " + layout.byteSize());
        while (true) {
            SlotTable l = current();
            try {
                slotSlice(l, gpa, value.byteSize(), "writeStruct").write(0, value);
                return;
            } catch (IllegalStateException e) {
                retired(l, e); // the same bytes again, on the new table
            }
        }
    }

    // ------------------------------------------------------------------------------------------ channels

    /**
     * One read call of {@code ch} straight into guest memory at {@code gpa}, up to {@code len} bytes (the
     * channel reads into direct buffers over guest RAM: no intermediate copy). When the range spans several
     * slots (or GUEST_MEMFD pages, or more than 1 GiB) and {@code ch} is a {@link ScatteringByteChannel}, the
     * call is one scattering read over all of them (one readv); otherwise one read into the first part. So a
     * blocking channel returns what one {@code read} gives (a datagram, a tap frame, what a pipe or socket
     * has now) and never waits to fill the range: use {@link #readFullyFrom} for that. Returns the bytes
     * stored, -1 at end of stream. The whole range is checked first (holes, read-only, private pages: typed
     * exception, nothing read), so nothing is consumed from the channel that cannot be stored. The slots are
     * held for the call (see the class comment). If the channel throws after storing some bytes, their pages
     * are marked dirty before the exception propagates.
     */
    public long readFrom(long gpa, ReadableByteChannel ch, long len) throws IOException {
        return transfer(gpa, len, true, "readFrom", t -> t.readOnce(ch));
    }

    /**
     * Reads from {@code ch} into guest memory at {@code gpa} until {@code len} bytes are stored, the stream
     * ends, or a call stores nothing (a non-blocking channel with nothing more now); scattering reads over
     * the remaining parts when the channel can. Returns the bytes stored (fewer than {@code len} only in
     * those two cases), -1 at end of stream before any byte. Checks, holds and dirty marks as {@link #readFrom}.
     */
    public long readFullyFrom(long gpa, ReadableByteChannel ch, long len) throws IOException {
        return transfer(gpa, len, true, "readFullyFrom", t -> t.readFully(ch));
    }

    /**
     * A block device's read: {@code len} bytes from file offset {@code position} into guest memory at
     * {@code gpa}, fewer only at end of file (-1 when {@code position} is at or past it); pread per part of
     * the range, repeated on the short counts a file gives only near its end or on a signal. The channel's
     * position is unchanged. Checks, holds and dirty marks as {@link #readFrom}.
     */
    public long readFrom(long gpa, FileChannel ch, long position, long len) throws IOException {
        if (position < 0) throw new IllegalArgumentException("readFrom file position " + position);
        return transfer(gpa, len, true, "readFrom", t -> t.readAt(ch, position));
    }

    /**
     * One write call of {@code ch} from guest memory at {@code gpa}, up to {@code len} bytes: one gathering
     * write (writev) over every part of the range when it spans several and {@code ch} is a
     * {@link GatheringByteChannel}, otherwise one write of the first part. Returns the bytes written: for a
     * blocking channel usually all of them (a blocking socket or pipe writes all it is given), fewer for a
     * non-blocking one that takes no more now, and only the first part for a channel that cannot gather;
     * {@link #writeFullyTo} loops. The range is checked first, as for {@link #readFrom}, and held for the call.
     */
    public long writeTo(long gpa, WritableByteChannel ch, long len) throws IOException {
        return transfer(gpa, len, false, "writeTo", t -> t.writeOnce(ch));
    }

    /**
     * Writes guest memory at {@code gpa} to {@code ch} until {@code len} bytes are written or a call writes
     * nothing (a non-blocking channel that takes no more now). Returns the bytes written.
     */
    public long writeFullyTo(long gpa, WritableByteChannel ch, long len) throws IOException {
        return transfer(gpa, len, false, "writeFullyTo", t -> t.writeFully(ch));
    }

    /**
     * A block device's write: {@code len} bytes of guest memory at {@code gpa} to file offset
     * {@code position} (pwrite per part of the range, repeated on short counts). The channel's position is
     * unchanged. Returns the bytes written.
     */
    public long writeTo(long gpa, FileChannel ch, long position, long len) throws IOException {
        if (position < 0) throw new IllegalArgumentException("writeTo file position " + position);
        return transfer(gpa, len, false, "writeTo", t -> t.writeAt(ch, position));
    }

    @FunctionalInterface
    private interface Io {
        long run(ChannelTransfer t) throws IOException;
    }

    private long transfer(long gpa, long len, boolean intoGuest, String op, Io io) throws IOException {
        if (len < 0) throw new IllegalArgumentException(op + " length " + len);
        Mode mode = intoGuest ? Mode.WRITE : Mode.READ;
        if (len == 0) {
            ChunkWalk.check(current(), policy, gpa, 0, mode, op);
            return 0;
        }
        SlotTable l = holdSlots(gpa, len, mode, op);
        try {
            return io.run(ChannelTransfer.over(l, policy, gpa, len, op));
        } finally {
            gate.releaseRange(l, gpa >>> l.shift, (gpa + len - 1) >>> l.shift);
        }
    }

    /**
     * Checks {@code [gpa, gpa + len)} (everything before moving a byte) and holds its slots on the current
     * table. A slot with a change pending (a delete, a move, its region or this memory closing) makes us
     * wait for that change's outcome and start again on the table then current; so does a change published
     * between our read of the table and our holds, whose views may already be closed.
     */
    private SlotTable holdSlots(long gpa, long len, Mode mode, String op) {
        while (true) {
            SlotTable l = current();
            ChunkWalk.check(l, policy, gpa, len, mode, op);
            long first = gpa >>> l.shift, last = (gpa + len - 1) >>> l.shift;
            int pending = gate.holdRange(l, first, last);
            if (pending >= 0) {
                gate.awaitOutcome(l.mapping(pending).hold());
            } else if (current() == l) {
                return l;
            } else {
                gate.releaseRange(l, first, last);
            }
        }
    }

    // ------------------------------------------------------------------------------------------ pins

    /**
     * A pin on this memory's layout (vm-memory's {@code GuestMemoryAtomic} snapshot, KVM's
     * {@code srcu_read_lock} on the memslots): while any pin is open, a memslot change that would change which
     * gpa is which memory (create, delete, move; not a FLAGS_ONLY change), the close of a region backing a
     * slot and {@link GuestMemory#close()} wait for every pin to close, at most the
     * {@linkplain #setDrainTimeout drain timeout}, and are then refused with {@link SlotBusyException}. So a
     * device walking a descriptor chain under a pin sees one layout from its first access to its last, and a
     * change made meanwhile either waits for the walk or fails cleanly.
     *
     * <p>The accessors are the ordinary ones; a pin costs one atomic increment and decrement. Pins do not
     * nest with a change on the same thread: a thread that changes the slots while it holds a pin waits out
     * the timeout and gets the exception. A pin opened while a change is pending waits for its outcome.
     * A pin belongs to the thread that opened it: each thread has one {@code Pin} object per memory, counting
     * its open pins, so opening one allocates nothing whatever the JIT inlines (an object per pin was
     * scalar-replaced on x86-64 but not on arm64). Closing more pins than the thread opened throws
     * IllegalStateException.
     */
    public static final class Pin implements AutoCloseable {
        private final LayoutGate gate;
        private int depth; // this thread's open pins on this memory; only its thread touches it

        private Pin(LayoutGate gate) {
            this.gate = gate;
        }

        /** Releases one of this thread's pins; with none open, throws IllegalStateException. */
        @Override
        public void close() {
            if (depth == 0) throw UseAfterClose.of("pin", "close()");
            depth--;
            gate.unpin();
        }

        @Override
        public String toString() {
            return depth == 0 ? "pin (closed)" : "pin (" + depth + " open on this thread)";
        }
    }

    private final ThreadLocal<Pin> pins = ThreadLocal.withInitial(() -> new Pin(gate));

    /** Opens a {@link Pin} on the layout; waits first for the outcome of a layout change under way. */
    public Pin pin() {
        if (closed) throw UseAfterClose.of(this, "pin()");
        Pin p = pins.get();
        gate.pin();
        if (closed) {
            gate.unpin();
            throw UseAfterClose.of(this, "pin()");
        }
        p.depth++;
        return p;
    }

    /**
     * How long a memslot change, the close of a registered region and {@link #close()} wait for the channel
     * transfers holding the slots they would take away, and for open {@link Pin}s, before they give up with
     * {@link SlotBusyException} (default 1 s; zero: do not wait).
     */
    public void setDrainTimeout(Duration timeout) {
        gate.setTimeout(Objects.requireNonNull(timeout, "timeout"));
    }

    public Duration drainTimeout() {
        return gate.timeout();
    }

    // ------------------------------------------------------------------------------------------ scatter-gather

    /**
     * The host segments of {@code [gpa, gpa + len)}, checked for reading guest memory ({@code write} false:
     * the data goes from the guest to a device) or for writing it ({@code write} true: a device-writable
     * buffer): one segment per slot the range crosses, one per page in GUEST_MEMFD slots. A hole, an unbacked
     * slot, a read-only slot when {@code write}, or a private page refuses it with the typed
     * {@link GuestMemoryException} naming that gpa, with 0 bytes done. See {@link GuestBuffers}.
     */
    public GuestBuffers buffers(long gpa, long len, boolean write) {
        if (len < 0) throw new IllegalArgumentException("buffers length " + len);
        return GuestBuffers.of(this, current(), policy, new long[] {gpa}, new long[] {len}, 1, write, "buffers");
    }

    /**
     * The host segments of a list of guest buffers, {@code [gpas[k], gpas[k] + lens[k])} in order (a virtio
     * descriptor chain's device-readable or device-writable part), checked as one: a refusal anywhere refuses
     * the whole list with 0 bytes done, before anything is transferred. Zero-length buffers give no segment.
     */
    public GuestBuffers buffers(long[] gpas, long[] lens, boolean write) {
        if (gpas.length != lens.length)
            throw new IllegalArgumentException(gpas.length + " gpas but " + lens.length + " lengths");
        return buffers(gpas, lens, gpas.length, write);
    }

    /** {@link #buffers(long[], long[], boolean)} of the first {@code count} entries (arrays a device model reuses). */
    public GuestBuffers buffers(long[] gpas, long[] lens, int count, boolean write) {
        return GuestBuffers.of(this, current(), policy, gpas, lens, count, write, "buffers");
    }

    /**
     * Records in the VMM's dirty log what a transfer outside this class stored into the first {@code bytes}
     * bytes of {@code bufs} (a {@link java.nio.channels.ScatteringByteChannel} read into
     * {@link GuestBuffers#toByteBuffers()}, or the caller's own readv of {@link GuestBuffers#toIovecs()}).
     */
    public void markDirty(GuestBuffers bufs, long bytes) {
        checkOwn(bufs, "markDirty");
        if (bytes < 0 || bytes > bufs.totalLength())
            throw new IllegalArgumentException("markDirty: " + bytes + " bytes of a list of " + bufs.totalLength());
        bufs.markWritten(bytes);
    }

    /**
     * {@code readv(fd)} into {@code [gpa, gpa + len)}: from the fd's position (which advances), straight into
     * guest RAM, one system call per IOV_MAX segments ({@link io.guestmem.sys.Uio}). Returns the bytes read,
     * short at end of file (0) or when the fd has no more now, and marks exactly those bytes' pages dirty. The
     * range is checked first as {@link #buffers(long, long, boolean)} does, so a refusal moves nothing. A
     * failing call throws {@link io.guestmem.sys.UioException} (errno and call) after the bytes of the calls
     * before it were marked.
     */
    public long readv(int fd, long gpa, long len) {
        return readv(fd, buffers(gpa, len, true));
    }

    /** {@link #readv(int, long, long)} into a list checked for writing ({@link GuestBuffers#writable()}). */
    public long readv(int fd, GuestBuffers bufs) {
        return fdTransfer(FdCall.READV, fd, 0, bufs);
    }

    /** {@code preadv(fd, offset)} into {@code [gpa, gpa + len)}: as {@link #readv(int, long, long)}, at file offset {@code offset}. */
    public long preadv(int fd, long offset, long gpa, long len) {
        return preadv(fd, offset, buffers(gpa, len, true));
    }

    /** {@code preadv(fd, offset)} into a list checked for writing (a descriptor chain's device-writable buffers). */
    public long preadv(int fd, long offset, GuestBuffers bufs) {
        return fdTransfer(FdCall.PREADV, fd, offset, bufs);
    }

    /**
     * {@code writev(fd)} of {@code [gpa, gpa + len)}: guest RAM straight to the fd's position (which advances).
     * Returns the bytes written (short when the fd takes no more now). Checked first;
     * {@link io.guestmem.sys.UioException} on failure.
     */
    public long writev(int fd, long gpa, long len) {
        return writev(fd, buffers(gpa, len, false));
    }

    /** {@code writev(fd)} of a list (checked either way: it is only read). */
    public long writev(int fd, GuestBuffers bufs) {
        return fdTransfer(FdCall.WRITEV, fd, 0, bufs);
    }

    /** {@code pwritev(fd, offset)} of {@code [gpa, gpa + len)}: as {@link #writev(int, long, long)}, at file offset {@code offset}. */
    public long pwritev(int fd, long offset, long gpa, long len) {
        return pwritev(fd, offset, buffers(gpa, len, false));
    }

    /** {@code pwritev(fd, offset)} of a list (a descriptor chain's device-readable buffers). */
    public long pwritev(int fd, long offset, GuestBuffers bufs) {
        return fdTransfer(FdCall.PWRITEV, fd, offset, bufs);
    }

    private enum FdCall { READV, PREADV, WRITEV, PWRITEV }

    /**
     * Every fd transfer of guest memory goes through here. It holds the slots of {@code bufs} on the table the
     * list was checked on for the whole system call, as channel transfers do, so no slot change closes a view
     * (and no region unmaps) while the kernel holds its addresses; a change pending on one of them is waited
     * out first. A list whose slot changed since it was built has dead segments: building the iovecs then
     * throws IllegalStateException, before any system call.
     */
    private long fdTransfer(FdCall call, int fd, long offset, GuestBuffers bufs) {
        String op = call.name().toLowerCase(java.util.Locale.ROOT);
        checkOwn(bufs, op);
        boolean intoGuest = call == FdCall.READV || call == FdCall.PREADV;
        if (intoGuest && !bufs.writable())
            throw new IllegalArgumentException(op + " into " + bufs + ": the list was checked for reading guest memory, not writing it");
        SlotTable t = bufs.table();
        int[] slots = bufs.slotIndices();
        holdAll(t, slots);
        try {
            return fdCall(call, fd, offset, bufs, intoGuest);
        } finally {
            for (int s : slots) gate.releaseSlot(t, s);
        }
    }

    /** Holds every slot of {@code slots} in {@code t}, all or none: on a pending change, lets go of all and waits it out. */
    private void holdAll(SlotTable t, int[] slots) {
        while (true) {
            int k = 0, pending = -1;
            for (; k < slots.length; k++) {
                pending = gate.holdSlot(t, slots[k]);
                if (pending >= 0) break;
            }
            if (pending < 0) return;
            for (int j = 0; j < k; j++) gate.releaseSlot(t, slots[j]);
            gate.awaitOutcome(t.mapping(pending).hold());
        }
    }

    private static long fdCall(FdCall call, int fd, long offset, GuestBuffers bufs, boolean intoGuest) {
        try (io.guestmem.sys.IovecArray iov = bufs.toIovecs()) {
            long n;
            try {
                n = switch (call) {
                    case READV -> io.guestmem.sys.Uio.readv(fd, iov);
                    case PREADV -> io.guestmem.sys.Uio.preadv(fd, iov, offset);
                    case WRITEV -> io.guestmem.sys.Uio.writev(fd, iov);
                    case PWRITEV -> io.guestmem.sys.Uio.pwritev(fd, iov, offset);
                };
            } catch (io.guestmem.sys.UioException e) {
                if (intoGuest) bufs.markWritten(e.bytesDone()); // what the earlier calls stored did land
                throw e;
            }
            if (intoGuest) bufs.markWritten(n);
            return n;
        }
    }

    private void checkOwn(GuestBuffers bufs, String op) {
        if (bufs.owner != this) throw new IllegalArgumentException(op + ": " + bufs + " belongs to another GuestMemory");
    }

    // ------------------------------------------------------------------------------------------ dirty log

    /** The VMM's dirty bitmap of slot {@code slotId}. */
    public DirtyBitmap dirtyBitmap(int slotId) {
        return current().mappingOf(slotId).dirty();
    }

    /** Pages of slot {@code slotId} written through this API since the last collect; clears them. */
    public DirtyPages collectDirty(int slotId) {
        return DirtyHarvest.collect(current(), slotId);
    }

    /**
     * The "pages to send" of slot {@code slotId}: the VMM's writes (collected and cleared) plus
     * {@code externalGfns}, the absolute gfns an external tracker reported for the slot (KVM's dirty log or
     * ring, uffd-wp + PAGEMAP_SCAN: what {@code SlotDirtyTracker.collect()} returns). A gfn outside the slot
     * is an IllegalArgumentException (checked before the VMM's bits are cleared).
     */
    public DirtyPages collectDirty(int slotId, long[] externalGfns) {
        return DirtyHarvest.collect(current(), slotId, externalGfns);
    }

    /**
     * Like {@link #collectDirty(int, long[])} with a KVM_GET_DIRTY_LOG bitmap (bit i of word i/64 = page i of
     * the slot, {@link DirtyBitmap#wordsFor} words; bits past the slot's end must be clear).
     */
    public DirtyPages collectDirtyWithBitmap(int slotId, long[] externalBitmap) {
        return DirtyHarvest.collectWithBitmap(current(), slotId, externalBitmap);
    }

    /**
     * The pages to send of every slot, in gfn order: each slot's VMM writes merged with
     * {@code externalGfns.apply(slot)} (absolute gfns; null or empty for none).
     */
    public List<DirtyPages> pagesToSend(Function<Memslot, long[]> externalGfns) {
        return DirtyHarvest.pagesToSend(current(), externalGfns);
    }

    // ------------------------------------------------------------------------------------------ sharing

    /**
     * The vhost-user memory table: one row per slot backed by a shareable region (memfd, hugetlb memfd,
     * guest_memfd or another caller fd), in gpa order. Another process maps {@code fd} (passed over a unix
     * socket, or opened as {@code /proc/PID/fd/N}) at {@code fdOffset} for {@code size} bytes.
     */
    public List<SharedRegion> sharedRegions() {
        return VhostUserTable.of(current());
    }

    /**
     * Every slot of this memory's address space that has host memory, in gpa order, with its region (slots
     * without host memory are left out: nothing of them can be read).
     */
    public List<RamSlot> ramSlots() {
        SlotTable t = current();
        List<RamSlot> out = new ArrayList<>();
        for (SlotMapping m : t.mappings()) {
            if (m.view() == null || !m.region().isOpen()) continue;
            out.add(new RamSlot(m.slot(), m.region(), m.slot().userspaceAddr() - m.region().address()));
        }
        out.sort(Comparator.comparingLong(r -> r.slot().baseGfn()));
        return out;
    }

    // ------------------------------------------------------------------------------------------ lookup for benchmarks

    /**
     * The gpa -> slot step alone: the index of the slot holding {@code gpa} in the current table, or -1.
     * Allocation-free; what every accessor does first.
     */
    public int slotIndexOf(long gpa) {
        final SlotTable l = current();
        return l.set.indexOf(gpa >>> l.shift);
    }

    /** The memslot set the accessors currently use (the one of the last change this memory saw). */
    public MemslotSet memslotSet() {
        return current().set;
    }

    // ------------------------------------------------------------------------------------------ life cycle

    /**
     * Sees every memslot change. A create, delete or move of this address space is a layout change: it waits
     * in beforeCommit (under the memslot writer's lock, not ours) for the open pins and, for a delete or move,
     * for the transfers holding the slot's view, and vetoes the change with SlotBusyException when they do not
     * let go in time. Its marks stay until the change is published and the new table with it (committed) or
     * the change is rolled back, so that transfers and pins arriving meanwhile wait for the outcome.
     */
    private final class Observer implements MemslotObserver {
        // The memslot writer calls its observers for one change at a time, under its lock.
        private MemslotChange pendingChange;
        private LayoutGate.Barrier pending;

        @Override
        public void beforeCommit(MemslotChange change) {
            if (key(change).addressSpace() != addressSpace || change.kind() == MemslotChange.Kind.FLAGS_ONLY) return;
            List<SlotMapping> viewLost = List.of();
            synchronized (GuestMemory.this) {
                if (closed) return;
                SlotMapping m = change.old() == null ? null : layout.mappingOrNull(change.old().id());
                if (m != null && m.view() != null) viewLost = List.of(m);
            }
            Memslot k = key(change);
            pending = gate.begin("setMemslot(as " + k.addressSpace() + " slot " + k.id() + ") " + change.kind(),
                    viewLost, true, false);
            pendingChange = change;
        }

        @Override
        public void rolledBack(MemslotChange change) {
            finish(change);
        }

        @Override
        public void committed(MemslotChange change) {
            if (key(change).addressSpace() != addressSpace) return;
            try {
                synchronized (GuestMemory.this) {
                    if (!closed) rebuild(change);
                }
            } finally {
                finish(change);
            }
        }

        private void finish(MemslotChange change) {
            if (pendingChange != change) return;
            LayoutGate.Barrier b = pending;
            pending = null;
            pendingChange = null;
            gate.end(b);
        }

        private static Memslot key(MemslotChange change) {
            return change.updated() != null ? change.updated() : change.old();
        }
    }

    /**
     * A registered region is closing: wait (bounded) for the transfers holding the slots it backs and for the
     * pins, or refuse the close. Meanwhile no new view is made from it, and the slots it backs keep theirs
     * until the close goes ahead ({@link #regionClosed}) or is called off ({@link #regionCloseAborted}).
     */
    private void regionClosing(HostRegion region) {
        List<SlotMapping> backed = new ArrayList<>();
        synchronized (this) {
            if (closed || !regions.contains(region)) return;
            closingRegions.add(region);
            for (SlotMapping m : layout.mappings()) if (m.region() == region && m.view() != null) backed.add(m);
        }
        LayoutGate.Barrier b;
        try {
            b = gate.begin("close(" + region + ")", backed, !backed.isEmpty(), false);
        } catch (RuntimeException | Error refused) {
            synchronized (this) {
                closingRegions.remove(region);
                if (!closed) rebuild(); // a slot moved meanwhile may have gone without a view from it
            }
            throw refused;
        }
        synchronized (this) {
            regionBarriers.put(region, b);
        }
    }

    private void regionCloseAborted(HostRegion region) {
        LayoutGate.Barrier b;
        synchronized (this) {
            closingRegions.remove(region);
            b = regionBarriers.remove(region);
            if (!closed) rebuild();
        }
        gate.end(b);
    }

    private void regionClosed(HostRegion region) {
        LayoutGate.Barrier b;
        synchronized (this) {
            regions.remove(region);
            closingRegions.remove(region);
            b = regionBarriers.remove(region);
        }
        try {
            synchronized (this) {
                if (!closed) rebuild();
            }
        } finally {
            gate.end(b);
        }
    }

    /**
     * Makes the mappings match the current memslot set ({@link SlotMapping#remap}), publishes a table of
     * them, retires the old table, and only then closes the views that no longer serve. No transfer is inside
     * those: every change that takes a view away waited for the view's holds to drain (and new holds wait for
     * its outcome), so a close failing here is an I/O call of the caller's own on a {@link #slice}; the other
     * stale views are closed all the same and the first failure is thrown after.
     */
    private void rebuild() {
        MemslotSet set = memslots.current(addressSpace);
        List<RegionView> stale = new ArrayList<>();
        SlotTable old = layout;
        Map<Integer, SlotMapping> next = SlotMapping.remap(set, old != null ? old : SlotTable.closed(geometry, addressSpace),
                usableRegions(), stale, dirtyLogging);
        SlotTable t = new SlotTable(set, next::get, policy);
        LAYOUT.setVolatile(this, t);
        if (old != null) old.retire(t); // after publication: new accesses use the new table
        closeAll(stale);
    }

    /** Whether {@code [gpa, gpa + len)} is served by the fast path now (tests of the bucket geometry, in this package). */
    boolean servedFast(long gpa, long len, boolean forWrite) {
        return current().bucket(gpa, len, forWrite) >= 0;
    }

    private List<HostRegion> usableRegions() {
        List<HostRegion> usable = new ArrayList<>(regions);
        usable.removeAll(closingRegions);
        return usable;
    }

    /**
     * {@link #rebuild()} for one published memslot change of this address space: when the current table is of
     * the set that change was made from, only the changed slot is remapped and the table follows in
     * O(chunk) ({@link SlotTable#changed}); otherwise (a change this memory did not follow) the whole rebuild.
     */
    private void rebuild(MemslotChange change) {
        MemslotSet set = memslots.current(addressSpace);
        SlotTable old = layout;
        Memslot k = change.updated() != null ? change.updated() : change.old();
        if (old == null || old.closed || set.parentGeneration() != old.set.generation() || set.byId(k.id()) != change.updated()) {
            rebuild();
            return;
        }
        List<RegionView> stale = new ArrayList<>();
        SlotMapping prev = old.mappingOrNull(k.id());
        SlotMapping next = null;
        if (change.updated() != null) next = SlotMapping.remapOne(change.updated(), geometry.shift(), prev, usableRegions(), stale, dirtyLogging);
        else if (prev != null && prev.view() != null) stale.add(prev.view());
        SlotTable t = old.changed(set, k.id(), next, policy);
        LAYOUT.setVolatile(this, t);
        old.retire(t); // after publication: new accesses use the new table (a create keeps the span: no handshake)
        closeAll(stale);
    }

    private static void closeAll(Iterable<RegionView> views) {
        IllegalStateException first = null;
        for (RegionView v : views) {
            try {
                v.close();
            } catch (IllegalStateException e) {
                if (first == null) first = e;
                else first.addSuppressed(e);
            }
        }
        if (first != null) throw first;
    }

    private void checkOpen() {
        if (closed) throw new IllegalStateException("guest memory is closed");
    }

    /**
     * Detaches from the memslots and the regions and closes every slot view (slices and in-flight accessors
     * throw from now on). Waits first, at most the {@linkplain #setDrainTimeout drain timeout}, for the
     * channel transfers under way and the open pins; if they do not end, throws {@link SlotBusyException}
     * and the memory stays open. The regions stay open; the memslots stay as they are. Idempotent.
     */
    @Override
    public void close() {
        List<SlotMapping> before;
        synchronized (this) {
            if (closed) return;
            before = new ArrayList<>();
            for (SlotMapping m : layout.mappings()) before.add(m);
        }
        String op = "close(" + this + ")";
        LayoutGate.Barrier b = gate.begin(op, before, true, true);
        try {
            // A view published between our snapshot and the marks may have been held before them; none can be
            // held since (every hold waits while this memory is closing): drain those too.
            Set<SlotHold> drained = Collections.newSetFromMap(new IdentityHashMap<>());
            for (SlotMapping m : before) drained.add(m.hold());
            List<SlotMapping> late = new ArrayList<>();
            synchronized (this) {
                for (SlotMapping m : layout.mappings()) if (!drained.contains(m.hold())) late.add(m);
            }
            if (!late.isEmpty()) gate.end(gate.begin(op, late, false, false));
            List<HostRegion> detach;
            synchronized (this) {
                if (closed) return;
                closed = true;
                memslots.removeObserver(observer);
                SlotTable last = layout;
                LAYOUT.setVolatile(this, SlotTable.closed(geometry, addressSpace)); // every access: IllegalStateException
                last.retire(null);
                List<RegionView> views = new ArrayList<>();
                for (SlotMapping m : last.mappings()) if (m.view() != null) views.add(m.view());
                detach = List.copyOf(regions);
                closeAll(views);
            }
            for (HostRegion r : detach) r.removeCloseGuard(regionGuard);
        } finally {
            gate.end(b);
        }
    }

    @Override
    public String toString() {
        SlotTable l = current();
        return "GuestMemory[as " + addressSpace + ", " + l.set.size() + " slots, gen " + l.set.generation() + "]";
    }
}
