package io.guestmem.snapshot;

import static io.guestmem.snapshot.SnapshotFormat.CHUNK_BYTES;

import io.guestmem.access.PageAccessPolicy;
import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePageSize;
import io.guestmem.kvm.KvmVm;
import io.guestmem.memslot.Memslot;
import io.guestmem.mmu.FollowPfnOptions;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import io.guestmem.sys.UseAfterClose;
import io.guestmem.sys.Userfaultfd;
import io.guestmem.vm.VmMemory;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Restores guest memory on demand, through userfaultfd: the memory is usable at once, and each page arrives when
 * something first touches it (a vCPU, through KVM's GUP; any kernel access; the host's own accessors), while a
 * background thread streams the rest. What the kernel offers per backing:
 * <ul>
 *   <li>private memory (anon, THP, hugetlb): MISSING faults, answered by {@code UFFDIO_COPY} of the recorded
 *       bytes, or {@code UFFDIO_ZEROPAGE} where nothing is recorded (hugetlb has no zeropage: a copy of zeros);</li>
 *   <li>fd-backed memory (memfd, hugetlb memfd): MISSING and MINOR faults; the page cache is filled from the
 *       snapshot through the file ({@code pwrite}) and the fault answered by {@code UFFDIO_CONTINUE}. The
 *       prefetcher only fills the page cache, so a later touch is a MINOR fault: a mapping, no copy.</li>
 * </ul>
 * Pages are served in blocks of at least 64 KiB (a huge page on hugetlb): one fault brings its neighbours. A
 * fault jumps the queue: the handler thread serves every queued fault before it prefetches the next block. Once
 * every block with recorded data has arrived the ranges are unregistered, so from then on faults are the
 * kernel's ordinary ones (a page nothing recorded reads zero, as a fresh one).
 *
 * <p>The host's accessors ({@link VmMemory#memory()}) never fault on a page not yet restored: this restore is
 * their access policy for its slots, and brings the block in on the calling thread before the access. (A JVM
 * thread must not block in a page fault while in Java code: the fault handler is Java too, and a safepoint
 * would wait for both.) Code that touches a region's segment directly must wait for {@link #awaitComplete}.
 *
 * <p>A block whose record cannot be read or fails its checksum is poisoned ({@code UFFDIO_POISON}, Linux 6.6+):
 * the accessor that needed it throws {@link LazyRestoreException}, a kernel access gets EFAULT, and the guest a
 * memory error; never a hang and never wrong bytes. memfd_secret slots cannot be registered with userfaultfd:
 * restore those eagerly.
 */
public final class LazyRestore implements AutoCloseable {
    // Block states. CACHED: an fd-backed block whose page cache the prefetcher filled, not yet mapped.
    private static final int NEW = 0, SERVING = 1, SERVED = 2, FAILED = 3, CACHED = 4;
    private static final long BLOCK = 64 << 10;

    private final List<Snapshot> chain;
    private final long pageSize;
    private final VmMemory memory;
    private final List<HostRegion> regions = new ArrayList<>();
    private final LazySlot[] slots;
    private volatile LazySlot[] bySlotId = new LazySlot[0];
    private final Userfaultfd uffd;
    private final boolean canPoison;
    private final long[] prefetchOrder; // (slot index << 40) | block, file order
    private int prefetchNext;
    private final Thread handler;
    private final long t0 = System.nanoTime();
    private final AtomicLong faults = new AtomicLong(), accessor = new AtomicLong(), prefetched = new AtomicLong(),
            zeroBlocks = new AtomicLong(), served = new AtomicLong(), bytesRead = new AtomicLong(),
            failures = new AtomicLong(), dataServed = new AtomicLong();
    private volatile long firstFaultNanos = -1, completeNanos = -1;
    private volatile Throwable lastFailure;
    private volatile boolean complete, stop, closed;
    private final ThreadLocal<Buffers> buffers;

    /** One slot being restored. */
    private static final class LazySlot {
        final int index, slot; // manifest index, memslot id
        final long baseGfn;
        final HostRegion region;
        final long hva, len, block;
        final int fd;           // -1: private memory (COPY); else the file (pwrite + CONTINUE)
        final long fdOffset;
        final boolean hugetlb;
        final AtomicIntegerArray state;
        final boolean[] hasData;
        long dataBlocks;

        LazySlot(int index, SnapshotSlot s, HostRegion region, long pageSize) {
            this.index = index;
            this.slot = s.slotId();
            this.baseGfn = s.gpa() / pageSize;
            this.region = region;
            hva = region.address();
            len = s.size();
            block = Math.min(len, Math.max(BLOCK, region.pageSize()));
            fd = region.fd().isPresent() ? region.fd().getAsInt() : -1;
            fdOffset = region.fdOffset() + (hva - region.address());
            hugetlb = region.backing().isHugetlb();
            int n = (int) ((len + block - 1) / block);
            state = new AtomicIntegerArray(n);
            hasData = new boolean[n];
        }

        int blocks() {
            return state.length();
        }

        long blockLen(int b) {
            return Math.min(block, len - b * block);
        }
    }

    private static final class Buffers {
        final ByteBuffer block, record;

        Buffers(long blockBytes, long recordBytes) {
            block = ByteBuffer.allocateDirect((int) blockBytes);
            record = ByteBuffer.allocateDirect((int) recordBytes);
        }
    }

    /**
     * Builds fresh regions of the recorded backings with the recorded slots (mirrored into {@code vm}, or none
     * when null), registers them with a userfaultfd and starts serving: the memory can be used, and a guest
     * run, as soon as this returns. The snapshots stay open until {@link #close}; the caller closes them after.
     * On failure everything built is released.
     */
    public static LazyRestore start(List<Snapshot> chain, KvmVm vm) throws IOException {
        return new LazyRestore(chain, vm, true);
    }

    /**
     * As {@link #start(List, KvmVm)}; without {@code prefetch} pages arrive only when touched (to measure
     * fault service, or for a guest that touches little of its memory).
     */
    public static LazyRestore start(List<Snapshot> chain, KvmVm vm, boolean prefetch) throws IOException {
        return new LazyRestore(chain, vm, prefetch);
    }

    private LazyRestore(List<Snapshot> chain, KvmVm vm, boolean prefetch) throws IOException {
        SnapshotManifest m = SnapshotRestore.checkChain(chain);
        this.chain = List.copyOf(chain);
        this.pageSize = m.pageSize();
        memory = new VmMemory(vm, FollowPfnOptions.defaults(), new Access());
        Userfaultfd u = null;
        try {
            if (memory.memslots().geometry().pageSize() != pageSize)
                throw new SnapshotLayoutException("the snapshot's page size is " + pageSize + ", this machine's "
                        + memory.memslots().geometry().pageSize());
            slots = new LazySlot[m.slots().size()];
            int maxId = 0;
            long maxBlock = pageSize;
            for (int i = 0; i < slots.length; i++) {
                SnapshotSlot s = m.slots().get(i);
                if (s.addressSpace() != memory.memory().addressSpace())
                    throw new SnapshotLayoutException("slot " + s.slotId() + " is in address space " + s.addressSpace());
                if (s.backing() == Backing.SECRET)
                    throw new SnapshotLayoutException("slot " + s.slotId() + " is memfd_secret memory, which userfaultfd "
                            + "cannot register: restore it eagerly");
                HostRegion r = SnapshotRestore.create(s);
                regions.add(r);
                slots[i] = new LazySlot(i, s, r, pageSize);
                maxId = Math.max(maxId, s.slotId());
                maxBlock = Math.max(maxBlock, slots[i].block);
            }
            LazySlot[] byId = new LazySlot[maxId + 1];
            for (LazySlot s : slots) byId[s.slot] = s;
            bySlotId = byId; // before the slots exist, so the accessors' layout sees them governed
            long recordBytes = Math.max(CHUNK_BYTES, pageSize);
            long blockBytes = maxBlock;
            buffers = ThreadLocal.withInitial(() -> new Buffers(blockBytes, recordBytes));

            // Which blocks hold recorded data: the prefetcher's work, in file order.
            List<Long> order = new ArrayList<>();
            for (Snapshot s : chain) {
                for (Snapshot.Run r : s.runs()) {
                    if (r.zero()) continue;
                    LazySlot ls = slots[r.slotIndex()];
                    long first = r.firstPage() * pageSize / ls.block, last = ((r.firstPage() + r.pages()) * pageSize - 1) / ls.block;
                    for (long b = first; b <= last; b++) {
                        if (!ls.hasData[(int) b]) {
                            ls.hasData[(int) b] = true;
                            ls.dataBlocks++;
                            order.add(((long) ls.index << 40) | b);
                        }
                    }
                }
            }
            prefetchOrder = prefetch ? order.stream().mapToLong(Long::longValue).toArray() : new long[0];

            // One userfaultfd for all slots (kernel faults too: KVM's GUP is a kernel access).
            long supported;
            try (Userfaultfd probe = Userfaultfd.open(false)) {
                supported = probe.api(0).features();
            }
            long want = Userfaultfd.FEATURE_MISSING_SHMEM | Userfaultfd.FEATURE_MISSING_HUGETLBFS
                    | Userfaultfd.FEATURE_MINOR_SHMEM | Userfaultfd.FEATURE_MINOR_HUGETLBFS | Userfaultfd.FEATURE_POISON
                    | Userfaultfd.FEATURE_THREAD_ID;
            u = Userfaultfd.open(false);
            u.api(want & supported);
            canPoison = (supported & Userfaultfd.FEATURE_POISON) != 0;
            for (LazySlot s : slots) {
                long mode = Userfaultfd.MODE_MISSING;
                if (s.fd >= 0) {
                    long minor = s.hugetlb ? Userfaultfd.FEATURE_MINOR_HUGETLBFS : Userfaultfd.FEATURE_MINOR_SHMEM;
                    if ((supported & minor) == 0)
                        throw new SnapshotLayoutException("slot " + s.slot + " (" + s.region.backing() + "): this kernel "
                                + "has no userfaultfd MINOR faults on it");
                    mode |= Userfaultfd.MODE_MINOR;
                }
                u.register(s.hva, s.len, mode);
            }
            uffd = u;
            for (int i = 0; i < slots.length; i++) {
                SnapshotSlot s = m.slots().get(i);
                memory.memory().addRam(s.slotId(), s.gpa(), regions.get(i), 0, s.size(), s.memslotFlags());
            }
        } catch (RuntimeException | Error e) {
            if (u != null) u.close();
            releaseAll(e);
            throw e;
        }
        handler = Thread.ofPlatform().daemon().name("guestmem-lazy-restore").start(this::serveLoop);
    }

    private void releaseAll(Throwable cause) {
        try {
            new RestoredMemory(memory, regions, null).close();
        } catch (RuntimeException suppressed) {
            if (cause != null) cause.addSuppressed(suppressed);
            else throw suppressed;
        }
    }

    public VmMemory memory() {
        if (closed) throw UseAfterClose.of("LazyRestore", "memory()");
        return memory;
    }

    public List<HostRegion> regions() {
        return List.copyOf(regions);
    }

    /** Waits until every data block has arrived (or the timeout); true when complete. */
    public boolean awaitComplete(Duration timeout) throws InterruptedException {
        handler.join(timeout);
        return complete;
    }

    /** The last failure to serve a block (or of the handler thread), null if none. */
    public Throwable lastFailure() {
        return lastFailure;
    }

    public LazyRestoreStats stats() {
        long data = 0;
        for (LazySlot s : slots) data += s.dataBlocks;
        long ff = firstFaultNanos, c = completeNanos;
        return new LazyRestoreStats(faults.get(), accessor.get(), prefetched.get(), zeroBlocks.get(), served.get(), data,
                bytesRead.get(), ff < 0 ? -1 : (ff - t0) / 1e3, c < 0 ? -1 : (c - t0) / 1e6, failures.get());
    }

    // ------------------------------------------------------------------------------------------ the handler

    private void serveLoop() {
        try {
            Userfaultfd.Event e = null;
            while (!stop) {
                if (e == null) e = uffd.read();
                if (e instanceof Userfaultfd.Pagefault pf) {
                    onFault(pf);
                    e = null;
                    continue;
                }
                e = null; // no other event was asked for (no FORK/REMAP/REMOVE/UNMAP features)
                if (prefetchOne()) continue;
                if (dataServed.get() == totalDataBlocks()) break;
                e = uffd.await(Duration.ofMillis(20)); // blocks another thread is serving: wait for faults meanwhile
            }
            if (!stop) finish();
        } catch (RuntimeException | Error e) {
            failures.incrementAndGet();
            lastFailure = e;
            throw e;
        }
    }

    private long totalDataBlocks() {
        long n = 0;
        for (LazySlot s : slots) n += s.dataBlocks;
        return n;
    }

    /** Every data block is in place: unregister, so the remaining (zero) pages fault as fresh memory does. */
    private void finish() {
        for (LazySlot s : slots) {
            if (s.region.isOpen()) uffd.unregister(s.hva, s.len);
        }
        completeNanos = System.nanoTime();
        complete = true;
    }

    private void onFault(Userfaultfd.Pagefault pf) {
        long a = pf.address();
        for (LazySlot s : slots) {
            if (a >= s.hva && a < s.hva + s.len) {
                if (firstFaultNanos < 0) firstFaultNanos = System.nanoTime();
                faults.incrementAndGet();
                serve(s, (int) ((a - s.hva) / s.block), Who.FAULT);
                return;
            }
        }
    }

    private boolean prefetchOne() {
        while (prefetchNext < prefetchOrder.length) {
            long k = prefetchOrder[prefetchNext++];
            LazySlot s = slots[(int) (k >>> 40)];
            int b = (int) (k & ((1L << 40) - 1));
            if (s.state.get(b) != NEW) continue;
            serve(s, b, Who.PREFETCH);
            return true;
        }
        return false;
    }

    private enum Who { FAULT, ACCESS, PREFETCH }

    /** Serves block {@code b} of {@code s} once, whoever asks first; the others wait for (or are woken by) it. */
    private void serve(LazySlot s, int b, Who who) {
        long addr = s.hva + b * s.block, len = s.blockLen(b);
        int from;
        while (true) {
            from = s.state.get(b);
            if (from == SERVED) {
                if (who == Who.FAULT) uffd.wake(addr, len); // the fault raced the serve
                return;
            }
            if (from == FAILED) {
                if (who == Who.ACCESS) throw new LazyRestoreException("the page at " + hex(addr) + " of slot " + s.slot
                        + " could not be restored", null);
                return;
            }
            if (from == SERVING) {
                if (who != Who.ACCESS) return; // the server's ioctl wakes the faulting threads
                Thread.onSpinWait();
                continue;
            }
            if (from == CACHED && who == Who.PREFETCH) return;
            if (s.state.compareAndSet(b, from, SERVING)) break;
        }
        try {
            boolean data = s.hasData[b];
            if (from == CACHED) {
                resolve(addr, len, (at, n) -> uffd.continueRange(at, n, 0));
            } else {
                Buffers buf = buffers.get();
                data = fill(s, b, buf);
                place(s, addr, len, data, buf, who);
            }
            s.state.set(b, who == Who.PREFETCH && s.fd >= 0 ? CACHED : SERVED);
            if (from == NEW) {
                served.incrementAndGet();
                if (s.hasData[b]) dataServed.incrementAndGet();
                if (!data) zeroBlocks.incrementAndGet();
                switch (who) {
                    case FAULT -> {}
                    case ACCESS -> accessor.incrementAndGet();
                    case PREFETCH -> prefetched.incrementAndGet();
                }
            }
        } catch (IOException | RuntimeException e) {
            s.state.set(b, FAILED);
            failures.incrementAndGet();
            lastFailure = e;
            if (from == NEW && s.hasData[b]) dataServed.incrementAndGet(); // nothing more will come for it
            if (canPoison) {
                try {
                    uffd.poison(addr, len, 0);
                } catch (SyscallException pe) {
                    e.addSuppressed(pe);
                }
            }
            if (who == Who.ACCESS)
                throw new LazyRestoreException("the page at " + hex(addr) + " of slot " + s.slot + " could not be restored: "
                        + e.getMessage(), e);
        }
    }

    /** The block's bytes into {@code buf.block}: zeros, then each snapshot's records over it in chain order. */
    private boolean fill(LazySlot s, int b, Buffers buf) throws IOException {
        long len = s.blockLen(b);
        ByteBuffer out = buf.block.clear().limit((int) len);
        MemorySegment seg = MemorySegment.ofBuffer(out);
        seg.fill((byte) 0);
        if (!s.hasData[b]) return false;
        long from = b * s.block / pageSize, to = from + len / pageSize; // pages of the block
        for (Snapshot snap : chain) {
            for (Snapshot.Run r : runsOf(snap, s.index, from, to)) {
                long lo = Math.max(from, r.firstPage()), hi = Math.min(to, r.firstPage() + r.pages());
                if (r.zero()) {
                    seg.asSlice((lo - from) * pageSize, (hi - lo) * pageSize).fill((byte) 0);
                    continue;
                }
                long recLen = (long) r.pages() * pageSize;
                SnapshotRestore.checkedRead(snap, r, buf.record, r.dataOffset(), recLen);
                bytesRead.addAndGet(recLen);
                MemorySegment rec = MemorySegment.ofBuffer(buf.record);
                MemorySegment.copy(rec, (lo - r.firstPage()) * pageSize, seg, (lo - from) * pageSize, (hi - lo) * pageSize);
            }
        }
        return true;
    }

    /** The runs of slot {@code slot} in {@code snap} that overlap pages [from, to). */
    private static List<Snapshot.Run> runsOf(Snapshot snap, int slot, long from, long to) {
        List<Snapshot.Run> out = new ArrayList<>(4);
        List<Snapshot.Run> runs = snap.runsOfSlot(slot);
        int lo = 0, hi = runs.size();
        while (lo < hi) { // first run ending after `from`
            int mid = (lo + hi) >>> 1;
            Snapshot.Run r = runs.get(mid);
            if (r.firstPage() + r.pages() <= from) lo = mid + 1; else hi = mid;
        }
        for (int i = lo; i < runs.size() && runs.get(i).firstPage() < to; i++) out.add(runs.get(i));
        return out;
    }

    /** Puts the block's bytes in place and wakes whoever waits on it. */
    private void place(LazySlot s, long addr, long len, boolean data, Buffers buf, Who who) {
        long src = MemorySegment.ofBuffer(buf.block).address();
        if (s.fd >= 0) {
            Posix.pwrite(s.fd, MemorySegment.ofBuffer(buf.block), len, s.fdOffset + (addr - s.hva));
            if (who == Who.PREFETCH) return; // in the page cache: a touch is a MINOR fault, answered below
            resolve(addr, len, (at, n) -> uffd.continueRange(at, n, 0));
            return;
        }
        if (!data && !s.hugetlb) resolve(addr, len, (at, n) -> uffd.zeroPage(at, n, 0));
        else resolve(addr, len, (at, n) -> uffd.copy(at, src + (at - addr), n, 0));
    }

    private interface Resolver {
        long apply(long at, long len);
    }

    /** Runs a resolving ioctl over the whole range: partial progress goes on, EEXIST (already there) skips a page. */
    private void resolve(long addr, long len, Resolver r) {
        long at = addr, end = addr + len, step = Math.max(pageSize, 4096);
        int again = 0;
        while (at < end) {
            try {
                at += r.apply(at, end - at);
            } catch (SyscallException e) {
                if (e.is(Errno.EEXIST)) {
                    at += step; // that page was there already (a MINOR fault's page-cache page mapped, or a race)
                } else if (e.is(Errno.EAGAIN) && again++ < 100) {
                    Thread.onSpinWait();
                } else {
                    throw e;
                }
            }
        }
    }

    // ------------------------------------------------------------------------------------------ the accessors

    /** The accessors' policy: a page of a block not yet restored is brought in before they touch it. */
    private final class Access implements PageAccessPolicy {
        @Override
        public boolean governs(Memslot slot) {
            LazySlot[] by = bySlotId;
            return slot.addressSpace() == 0 && slot.id() < by.length && by[slot.id()] != null;
        }

        @Override
        public boolean mayAccess(Memslot slot, long gfn, boolean write) {
            if (complete) return true;
            LazySlot s = bySlotId[slot.id()];
            int b = (int) ((gfn - s.baseGfn) * pageSize / s.block);
            if (s.state.get(b) != SERVED) serve(s, b, Who.ACCESS);
            return true;
        }
    }

    // ------------------------------------------------------------------------------------------ life cycle

    /** Stops the handler (bounded), closes the userfaultfd, the memory and the regions. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        stop = true;
        try {
            handler.join(Duration.ofSeconds(10));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        uffd.close(); // wakes any fault still waiting: it retries as an ordinary fault
        releaseAll(null);
    }

    private static String hex(long v) {
        return "0x" + Long.toHexString(v);
    }
}
