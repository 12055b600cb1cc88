package io.guestmem.snapshot;

import io.guestmem.sys.Errno;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import io.guestmem.sys.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Serves the pages of userfaultfd-registered ranges from a {@link PageSource}, in blocks, whoever asks first: a
 * fault read from the userfaultfd, the host's own accessor ({@link #serveAccess}), or the background prefetcher.
 * The engine under {@link LazyRestore} (the snapshot file is the source), {@link RemoteRestoreHandler} (the same,
 * in another process than the memory's) and post-copy migration (the source is the peer).
 *
 * <p>Per range, what the kernel offers: private memory (anon, THP, private hugetlb) takes MISSING faults,
 * answered by {@code UFFDIO_COPY} of the bytes, or {@code UFFDIO_ZEROPAGE} for a block with no data (hugetlb has
 * no zeropage: a copy of zeros). fd-backed memory (memfd, hugetlb memfd) takes MISSING and MINOR faults: the page
 * cache is filled through the file ({@code pwrite}, or {@code fallocate} for a block with no data) and the fault
 * answered by {@code UFFDIO_CONTINUE}; the
 * prefetcher only fills the page cache, so a later touch is a MINOR fault, a mapping without a copy. The ioctls
 * act on the memory of the process that created the userfaultfd, whichever process holds this server.
 *
 * <p>A fault jumps the queue: the handler thread serves every queued fault before it prefetches the next block.
 * Once every block with data has arrived the ranges are unregistered, so from then on faults are the kernel's
 * ordinary ones (a page with no data reads zero, as a fresh one). A block that cannot be served is poisoned
 * ({@code UFFDIO_POISON}, Linux 6.6+): the accessor that needed it gets {@link LazyRestoreException}, a kernel
 * access EFAULT, the guest a memory error; never a hang and never wrong bytes.
 */
public final class UffdPageServer implements AutoCloseable {
    /** Pages are served in blocks of at least this (a huge page on hugetlb): one fault brings its neighbours. */
    public static final long BLOCK = 64 << 10;
    // Block states. CACHED: an fd-backed block whose page cache the prefetcher filled, not yet mapped.
    private static final int NEW = 0, SERVING = 1, SERVED = 2, FAILED = 3, CACHED = 4;

    /**
     * One registered range: a memslot's memory, at {@code hva} in the process that owns the userfaultfd.
     *
     * @param fd       the backing file as this process holds it, -1 for private memory (served by COPY)
     * @param fdOffset the file offset of {@code hva}
     */
    public record Range(int slotId, long baseGfn, long hva, long len, long hostPageSize, int fd, long fdOffset,
                        boolean hugetlb) {
        /** The block size of this range: 64 KiB, or its huge page when larger, never more than the range. */
        public long block() {
            return blockSize(len, hostPageSize);
        }

        /** The block size of a range of {@code len} bytes with pages of {@code hostPageSize}. */
        public static long blockSize(long len, long hostPageSize) {
            return Math.min(len, Math.max(BLOCK, hostPageSize));
        }

        public boolean contains(long addr) {
            return addr >= hva && addr - hva < len;
        }
    }

    /** Where the bytes come from. Called from several threads at once (the handler's and the accessors'). */
    public interface PageSource {
        /**
         * The pages that hold data, as {@code {range index, first page, pages}} in the order the prefetcher
         * should bring them. Pages in no run read zero.
         */
        List<long[]> dataRuns();

        /**
         * Writes the data of pages [{@code firstPage}, {@code firstPage + pages}) of range {@code range} into
         * {@code out} (zeros are there already); returns the bytes read from the source. Throws when the data
         * cannot be had or fails its check: the block is then poisoned.
         */
        long fill(int range, long firstPage, long pages, MemorySegment out) throws IOException;
    }

    private final Userfaultfd uffd;
    private final long pageSize;
    private final Range[] ranges;
    private final Blocks[] blocks;
    private final Blocks[] bySlotId;
    private final PageSource source;
    private final boolean canPoison;
    private final long[] prefetchOrder; // (range index << 40) | block, the source's order
    private int prefetchNext;
    private volatile boolean prefetching;
    private final long totalDataBlocks;
    private final ThreadLocal<ByteBuffer> buffers;
    private final Thread handler;
    private final long t0 = System.nanoTime();
    private final AtomicLong faults = new AtomicLong(), accessor = new AtomicLong(), prefetched = new AtomicLong(),
            zeroBlocks = new AtomicLong(), served = new AtomicLong(), bytesRead = new AtomicLong(),
            failures = new AtomicLong(), dataServed = new AtomicLong();
    private volatile long firstFaultNanos = -1, completeNanos = -1;
    private volatile Throwable lastFailure;
    /** Why each failed block failed, by its address: an access that finds a block failed by the prefetcher (or by
     *  a fault) says the same reason the first one saw. Failures are rare, so a map is enough. */
    private final ConcurrentHashMap<Long, Throwable> failedBlocks = new ConcurrentHashMap<>();
    private volatile boolean complete, stop;

    /** The block states of one range. */
    private static final class Blocks {
        final int index;
        final Range range;
        final long block;
        final AtomicIntegerArray state;
        final boolean[] hasData;

        Blocks(int index, Range r) {
            this.index = index;
            range = r;
            block = r.block();
            int n = (int) ((r.len() + block - 1) / block);
            state = new AtomicIntegerArray(n);
            hasData = new boolean[n];
        }

        long blockLen(int b) {
            return Math.min(block, range.len() - b * block);
        }
    }

    /**
     * Starts serving {@code ranges}, already registered with {@code uffd} (MISSING, and MINOR for fd-backed
     * ones), on a handler thread named {@code name}. Without {@code prefetch}, pages arrive only when asked for.
     * {@code canPoison}: the userfaultfd has {@link Userfaultfd#FEATURE_POISON}.
     */
    public static UffdPageServer start(Userfaultfd uffd, long pageSize, List<Range> ranges, PageSource source,
                                       boolean prefetch, boolean canPoison, String name) {
        return new UffdPageServer(uffd, pageSize, ranges, source, prefetch, canPoison, name);
    }

    private UffdPageServer(Userfaultfd uffd, long pageSize, List<Range> ranges, PageSource source, boolean prefetch,
                           boolean canPoison, String name) {
        this.uffd = uffd;
        this.pageSize = pageSize;
        this.ranges = ranges.toArray(Range[]::new);
        this.source = source;
        this.canPoison = canPoison;
        blocks = new Blocks[this.ranges.length];
        int maxId = 0;
        long maxBlock = pageSize;
        for (int i = 0; i < blocks.length; i++) {
            blocks[i] = new Blocks(i, this.ranges[i]);
            maxId = Math.max(maxId, this.ranges[i].slotId());
            maxBlock = Math.max(maxBlock, blocks[i].block);
        }
        bySlotId = new Blocks[maxId + 1];
        for (Blocks b : blocks) bySlotId[b.range.slotId()] = b;
        long blockBytes = maxBlock;
        buffers = ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect((int) blockBytes));

        List<Long> order = new ArrayList<>();
        long data = 0;
        for (long[] run : source.dataRuns()) {
            Blocks bs = blocks[(int) run[0]];
            long first = run[1] * pageSize / bs.block, last = ((run[1] + run[2]) * pageSize - 1) / bs.block;
            for (long b = first; b <= last; b++) {
                if (!bs.hasData[(int) b]) {
                    bs.hasData[(int) b] = true;
                    data++;
                    order.add(((long) bs.index << 40) | b);
                }
            }
        }
        totalDataBlocks = data;
        prefetchOrder = order.stream().mapToLong(Long::longValue).toArray();
        prefetching = prefetch;
        handler = Thread.ofPlatform().daemon().name(name).start(this::serveLoop);
    }

    /** Brings in the block of {@code gfn} of slot {@code slotId} if it has not arrived (for the host's accessors). */
    public void serveAccess(int slotId, long gfn) {
        Blocks bs = bySlotId[slotId];
        int b = (int) ((gfn - bs.range.baseGfn()) * pageSize / bs.block);
        int s = bs.state.get(b);
        if (s == SERVED) return;
        // once complete the ranges are unregistered: a block never asked for faults as fresh memory, but a failed
        // one stays poisoned, and touching it from Java would be a SIGBUS (an InternalError), so it is refused here
        if (complete && s != FAILED) return;
        serve(bs, b, Who.ACCESS);
    }

    /** From now on the background prefetcher brings what has not been asked for (a no-op when it already does). */
    public void prefetchRest() {
        prefetching = true;
    }

    /** Whether every data block has arrived and the ranges are unregistered. */
    public boolean complete() {
        return complete;
    }

    /** Whether every data block arrived whole: complete, and none failed (so none is poisoned). */
    public boolean completeWithoutFailures() {
        return complete && failures.get() == 0;
    }

    /** Waits until every data block has arrived or the server stopped (or the timeout); true when complete. */
    public boolean awaitComplete(Duration timeout) throws InterruptedException {
        handler.join(timeout);
        return complete;
    }

    /** The last failure to serve a block (or of the handler thread), null if none. */
    public Throwable lastFailure() {
        return lastFailure;
    }

    public LazyRestoreStats stats() {
        long ff = firstFaultNanos, c = completeNanos;
        return new LazyRestoreStats(faults.get(), accessor.get(), prefetched.get(), zeroBlocks.get(), served.get(),
                totalDataBlocks, bytesRead.get(), ff < 0 ? -1 : (ff - t0) / 1e3, c < 0 ? -1 : (c - t0) / 1e6, failures.get());
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
                if (dataServed.get() == totalDataBlocks) break;
                e = uffd.await(Duration.ofMillis(20)); // blocks another thread is serving: wait for faults meanwhile
            }
            if (!stop) finish();
        } catch (RuntimeException | Error e) {
            failures.incrementAndGet();
            lastFailure = e;
            throw e;
        }
    }

    /** Every data block is in place: unregister, so the remaining (zero) pages fault as fresh memory does. */
    private void finish() {
        for (Range r : ranges) {
            try {
                uffd.unregister(r.hva(), r.len());
            } catch (SyscallException gone) {
                // the owner unmapped the range meanwhile (its process is closing the memory): nothing to unregister
            }
        }
        completeNanos = System.nanoTime();
        complete = true;
    }

    private void onFault(Userfaultfd.Pagefault pf) {
        long a = pf.address();
        for (Blocks bs : blocks) {
            if (bs.range.contains(a)) {
                if (firstFaultNanos < 0) firstFaultNanos = System.nanoTime();
                faults.incrementAndGet();
                serve(bs, (int) ((a - bs.range.hva()) / bs.block), Who.FAULT);
                return;
            }
        }
    }

    private boolean prefetchOne() {
        while (prefetching && prefetchNext < prefetchOrder.length) {
            long k = prefetchOrder[prefetchNext++];
            Blocks bs = blocks[(int) (k >>> 40)];
            int b = (int) (k & ((1L << 40) - 1));
            if (bs.state.get(b) != NEW) continue;
            serve(bs, b, Who.PREFETCH);
            return true;
        }
        return false;
    }

    private enum Who { FAULT, ACCESS, PREFETCH }

    /** Serves block {@code b} once, whoever asks first; the others wait for (or are woken by) it. */
    private void serve(Blocks bs, int b, Who who) {
        Range r = bs.range;
        long addr = r.hva() + b * bs.block, len = bs.blockLen(b);
        int from;
        while (true) {
            from = bs.state.get(b);
            if (from == SERVED) {
                if (who == Who.FAULT) uffd.wake(addr, len); // the fault raced the serve
                return;
            }
            if (from == FAILED) {
                if (who == Who.ACCESS) throw notRestored(r, addr, failedBlocks.get(addr));
                return;
            }
            if (from == SERVING) {
                if (who != Who.ACCESS) return; // the server's ioctl wakes the faulting threads
                Thread.onSpinWait();
                continue;
            }
            if (from == CACHED && who == Who.PREFETCH) return;
            if (bs.state.compareAndSet(b, from, SERVING)) break;
        }
        try {
            boolean data = bs.hasData[b];
            if (from == CACHED) {
                resolve(addr, len, pageSize, (at, n) -> uffd.continueRange(at, n, 0));
            } else {
                ByteBuffer buf = buffers.get().clear().limit((int) len);
                MemorySegment seg = MemorySegment.ofBuffer(buf);
                seg.fill((byte) 0);
                if (data) bytesRead.addAndGet(source.fill(bs.index, b * bs.block / pageSize, len / pageSize, seg));
                place(r, addr, len, data, seg, who);
            }
            bs.state.set(b, who == Who.PREFETCH && r.fd() >= 0 ? CACHED : SERVED);
            if (from == NEW) {
                served.incrementAndGet();
                if (bs.hasData[b]) dataServed.incrementAndGet();
                else zeroBlocks.incrementAndGet();
                switch (who) {
                    case FAULT -> {}
                    case ACCESS -> accessor.incrementAndGet();
                    case PREFETCH -> prefetched.incrementAndGet();
                }
            }
        } catch (IOException | RuntimeException e) {
            failedBlocks.put(addr, e); // before the state, so whoever sees FAILED finds the reason
            bs.state.set(b, FAILED);
            failures.incrementAndGet();
            lastFailure = e;
            if (from == NEW && bs.hasData[b]) dataServed.incrementAndGet(); // nothing more will come for it
            if (canPoison && !stop) { // once stopping, the owner may have closed the userfaultfd already
                try {
                    resolve(addr, len, pageSize, (at, n) -> uffd.poison(at, n, 0));
                } catch (SyscallException pe) {
                    e.addSuppressed(pe);
                }
            }
            if (who == Who.ACCESS) throw notRestored(r, addr, e);
        }
    }

    private static LazyRestoreException notRestored(Range r, long addr, Throwable why) {
        return new LazyRestoreException("the page at " + hex(addr) + " of slot " + r.slotId() + " could not be restored"
                + (why == null ? "" : ": " + why.getMessage()), why);
    }

    /** Puts the block's bytes in place and wakes whoever waits on it. */
    private void place(Range r, long addr, long len, boolean data, MemorySegment bytes, Who who) {
        long src = bytes.address();
        if (r.fd() >= 0) {
            long off = r.fdOffset() + (addr - r.hva());
            // a block with no data: allocate what the file lacks (zeros) and keep what it holds, for a block may
            // be partly in place already (a post-copy destination's memory, filled during pre-copy)
            if (data) Posix.pwrite(r.fd(), bytes, len, off);
            else Memfd.fallocate(r.fd(), Memfd.FALLOC_FL_KEEP_SIZE, off, len);
            if (who == Who.PREFETCH) return; // in the page cache: a touch is a MINOR fault, answered then
            resolve(addr, len, pageSize, (at, n) -> uffd.continueRange(at, n, 0));
            return;
        }
        if (!data && !r.hugetlb()) resolve(addr, len, pageSize, (at, n) -> uffd.zeroPage(at, n, 0));
        else resolve(addr, len, pageSize, (at, n) -> uffd.copy(at, src + (at - addr), n, 0));
    }

    /** One resolving ioctl: how many bytes from {@code at} it resolved. */
    public interface Resolver {
        long apply(long at, long len);
    }

    /**
     * Runs a resolving ioctl over a whole range: partial progress goes on, EEXIST (that page is there already: a
     * MINOR fault's page-cache page mapped, or a race) skips one page of {@code step} bytes, EAGAIN (the range's
     * mappings changing) retries.
     */
    public static void resolve(long addr, long len, long step, Resolver r) {
        long at = addr, end = addr + len;
        int again = 0;
        while (at < end) {
            try {
                at += r.apply(at, end - at);
            } catch (SyscallException e) {
                if (e.is(Errno.EEXIST)) {
                    at += step;
                } else if (e.is(Errno.EAGAIN) && again++ < 100) {
                    Thread.onSpinWait();
                } else {
                    throw e;
                }
            }
        }
    }

    /** Stops the handler thread (bounded wait). The userfaultfd stays open: its owner closes it. Idempotent. */
    @Override
    public void close() {
        stop = true;
        try {
            handler.join(Duration.ofSeconds(10));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static String hex(long v) {
        return "0x" + Long.toHexString(v);
    }
}
