package io.guestmem.migration;

import static io.guestmem.migration.MigrationWire.*;

import io.guestmem.access.GuestMemory;
import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.snapshot.LazyRegions;
import io.guestmem.snapshot.LazyRestoreStats;
import io.guestmem.snapshot.RestorePolicy;
import io.guestmem.snapshot.SnapshotSlot;
import io.guestmem.snapshot.UffdPageServer;
import io.guestmem.sys.Mman;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.zip.CRC32C;

/**
 * The destination of a post-copy migration after the switch: its guest runs while the pages the source sent
 * no final copy of arrive on demand, served by a {@link UffdPageServer} whose source is the peer (a REQUEST
 * record per block, answered by DATA and ZERO records), a fault jumping the background puller's queue.
 *
 * <p>At the switch, pages the source did not mark missing were checked against the source's checksums; the
 * blocks holding a missing page were dropped (their pre-copy bytes are stale: {@code MADV_DONTNEED} for private
 * memory, {@code MADV_REMOVE} for shared memory, which frees the file's pages too) and registered with a
 * userfaultfd. Every page that arrives is checked against the source's checksum at the switch before it is
 * placed; one that fails, or that cannot arrive (the source gone), is poisoned: the access that needed it fails,
 * never hangs. Once every block is in, the ranges are unregistered and RESULT tells the source how many pages
 * agreed: from then on the source may go.
 */
public final class PostCopy implements AutoCloseable {
    private final MigrationWire wire;
    private final ByteChannel ch;
    private final MigrationWire.Header h;
    private final int[][] crcs;
    private final long pageSize, total, t0;
    private final MigrationStats atSwitch;
    private final LazyRegions lazy;
    private final RestorePolicy policy;
    private final AtomicLong agree = new AtomicLong(), mismatched = new AtomicLong(), pulled = new AtomicLong();
    private final UffdPageServer server;
    private final Thread watcher;
    private volatile MigrationStats result;
    private volatile Throwable failure;
    private volatile boolean closed;
    /** One request (or the RESULT) on the stream at a time; not the monitor close() holds. */
    private final Object stream = new Object();

    private PostCopy(MigrationWire wire, ByteChannel ch, MigrationWire.Header h, int[][] crcs, long agreeAtSwitch,
                     List<long[]> runs, LazyRegions lazy, RestorePolicy policy, MigrationStats atSwitch, long t0,
                     boolean pull) {
        this.wire = wire;
        this.ch = ch;
        this.h = h;
        this.crcs = crcs;
        this.pageSize = h.pageSize();
        this.lazy = lazy;
        this.policy = policy;
        this.atSwitch = atSwitch;
        this.t0 = t0;
        long n = 0;
        for (int[] c : crcs) n += c.length;
        total = n;
        agree.set(agreeAtSwitch);
        server = UffdPageServer.start(lazy.uffd(), pageSize, lazy.ranges(), new Peer(runs), pull, lazy.canPoison(),
                "guestmem-postcopy");
        policy.attach((slot, gfn, write) -> {
            if (server.completeWithoutFailures()) policy.complete();
            else server.serveAccess(slot, gfn); // a block that failed throws: never a touch of a poisoned page
        });
        watcher = Thread.ofPlatform().daemon().name("guestmem-postcopy-result").start(this::awaitPages);
    }

    /**
     * At SWITCH: checks the pages in place, drops the blocks with a missing page, registers the regions and starts
     * serving. On failure the userfaultfd is closed; the regions are the caller's to release.
     */
    static PostCopy begin(MigrationWire wire, ByteChannel ch, MigrationWire.Header h, GuestMemory memory,
                          List<HostRegion> regions, int[][] crcs, long[][] missing, RestorePolicy policy,
                          MigrationStats atSwitch, long t0, boolean pull) {
        long pageSize = h.pageSize();
        List<long[]> runs = new ArrayList<>();   // {slot index, first page, pages}: whole blocks with a missing page
        long agree = 0;
        CRC32C c = new CRC32C();
        ByteBuffer page = ByteBuffer.allocateDirect((int) pageSize);
        for (int i = 0; i < regions.size(); i++) {
            SnapshotSlot s = h.slots().get(i);
            HostRegion r = regions.get(i);
            long perBlock = UffdPageServer.Range.blockSize(s.size(), r.pageSize()) / pageSize, npages = s.size() / pageSize;
            for (long b = 0; b * perBlock < npages; b++) {
                long first = b * perBlock, n = Math.min(perBlock, npages - first);
                if (anySet(missing[i], first, n)) {
                    long[] last = runs.isEmpty() ? null : runs.getLast();
                    if (last != null && last[0] == i && last[1] + last[2] == first) last[2] += n;
                    else runs.add(new long[] {i, first, n});
                    continue;
                }
                for (long p = first; p < first + n; p++) { // in place since pre-copy: checked now, before the guest runs
                    page.clear();
                    memory.read(s.gpa() + p * pageSize, page);
                    c.reset();
                    c.update(page.flip());
                    if ((int) c.getValue() == crcs[i][(int) p]) agree++;
                }
            }
        }
        for (long[] run : runs) {
            HostRegion r = regions.get((int) run[0]);
            boolean shared = r.fd().isPresent() || r.backing() == Backing.ANON_SHARED;
            Mman.madvise(r.address() + run[1] * pageSize, run[2] * pageSize, shared ? Mman.MADV_REMOVE : Mman.MADV_DONTNEED);
        }
        LazyRegions lazy = LazyRegions.register(pageSize, h.slots(), regions);
        try {
            return new PostCopy(wire, ch, h, crcs, agree, runs, lazy, policy, atSwitch, t0, pull);
        } catch (RuntimeException | Error e) {
            lazy.uffd().close();
            throw e;
        }
    }

    /** The peer as the server's page source: one request at a time on the stream, each answer checked. */
    private final class Peer implements UffdPageServer.PageSource {
        private final List<long[]> runs;
        private Throwable broken;

        Peer(List<long[]> runs) {
            this.runs = runs;
        }

        @Override
        public List<long[]> dataRuns() {
            return runs;
        }

        @Override
        public long fill(int slot, long firstPage, long pages, MemorySegment out) throws IOException {
            synchronized (stream) {
                if (broken != null) throw new MigrationException(wire.offset(), "the stream from the source failed before: "
                        + broken.getMessage(), broken);
                try {
                    wire.writeRecord(REQUEST, slot, firstPage, pages, null);
                    long got = 0;
                    while (got < pages) {
                        long at = wire.offset();
                        MigrationWire.Head r = wire.readHead();
                        if ((r.kind() != DATA && r.kind() != ZERO) || r.slot() != slot || r.a() != firstPage + got
                                || r.b() <= 0 || got + r.b() > pages || r.b() * pageSize > MAX_DATA_BYTES)
                            throw new MigrationException(at, "expected pages " + (firstPage + got) + ".." + (firstPage + pages)
                                    + " of slot index " + slot + ", got kind " + r.kind() + " slot " + r.slot() + " pages "
                                    + r.a() + "+" + r.b());
                        int len = (int) (r.b() * pageSize);
                        if (r.kind() == DATA) wire.readBody(r, out.asSlice(got * pageSize, len).asByteBuffer(), len);
                        got += r.b();
                    }
                } catch (IOException | RuntimeException e) {
                    broken = e;
                    throw e;
                }
            }
            CRC32C c = new CRC32C();
            long bad = -1;
            for (long p = 0; p < pages; p++) {
                c.reset();
                c.update(out.asSlice(p * pageSize, pageSize).asByteBuffer());
                if ((int) c.getValue() == crcs[slot][(int) (firstPage + p)]) agree.incrementAndGet();
                else if (bad < 0) bad = firstPage + p;
            }
            pulled.addAndGet(pages);
            if (bad >= 0) {
                mismatched.incrementAndGet();
                throw new MigrationException(wire.offset(), "page " + bad + " of slot " + h.slots().get(slot).slotId()
                        + " differs from the source's checksum at the switch");
            }
            return pages * pageSize;
        }
    }

    /** When every block is in: the accessors go straight through, and RESULT tells the source it may go. */
    private void awaitPages() {
        try {
            while (!server.awaitComplete(Duration.ofMillis(200))) if (closed) return;
            if (server.lastFailure() != null) { // some pages never arrived: the source must not think it may go
                failure = server.lastFailure();
                ch.close();
                return;
            }
            policy.complete();
            synchronized (stream) {
                wire.writeRecord(RESULT, NO_SLOT, agree.get(), total, null);
            }
            MigrationStats s = atSwitch;
            List<Long> perRound = new ArrayList<>(s.pagesPerRound());
            perRound.add(pulled.get());
            result = new MigrationStats(s.rounds(), perRound, s.pagesSent() + pulled.get(), wire.offset(), -1,
                    (System.nanoTime() - t0) / 1e6, agree.get(), total, null, pulled.get());
        } catch (IOException | RuntimeException | InterruptedException e) {
            failure = e;
        }
    }

    /**
     * Starts pulling in the background what nothing has asked for yet, when the migration was received without
     * ({@link MigrationDestination#receive(ByteChannel, io.guestmem.kvm.KvmVm, boolean)}); until then only faults
     * and accessors bring pages, and the migration cannot complete.
     */
    public void pullRest() {
        server.prefetchRest();
    }

    /**
     * Waits until every page has arrived and the source was told (or the timeout); true when so. Blocks that could
     * not be served count as not agreeing: {@link #result()} says how many.
     */
    public boolean awaitComplete(Duration timeout) throws InterruptedException {
        watcher.join(timeout);
        return result != null;
    }

    /** The whole migration as this side saw it, once complete; null before. */
    public MigrationStats result() {
        return result;
    }

    /** The page server's counts: faults served, blocks the accessors and the puller brought, failures. */
    public LazyRestoreStats stats() {
        return server.stats();
    }

    /** Why a block could not be served or the result not sent, null if nothing failed. */
    public Throwable failure() {
        Throwable f = failure;
        return f != null ? f : server.lastFailure();
    }

    /**
     * Stops serving and closes the userfaultfd (a fault still waiting retries as an ordinary one: stop the vCPUs
     * first). Before completion it closes the channel too, which ends the migration for the source. Idempotent.
     */
    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        if (result == null) {
            try {
                ch.close(); // a request blocked on the peer fails now
            } catch (IOException ignored) {
                // closing anyway
            }
        }
        server.close();
        lazy.uffd().close();
        try {
            watcher.join(Duration.ofSeconds(10));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static boolean anySet(long[] bits, long first, long n) {
        for (long p = first; p < first + n; p++) if ((bits[(int) (p >>> 6)] & (1L << p)) != 0) return true;
        return false;
    }
}
