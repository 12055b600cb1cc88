package io.guestmem.migration;

import static io.guestmem.migration.MigrationWire.*;

import io.guestmem.access.DirtyPages;
import io.guestmem.access.GuestMemory;
import io.guestmem.access.RamSlot;
import io.guestmem.memslot.Memslot;
import io.guestmem.snapshot.LazyRegions;
import io.guestmem.snapshot.SnapshotSlot;
import io.guestmem.snapshot.SnapshotWriter;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ByteChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import java.util.zip.CRC32C;

/**
 * Sends a running VM's RAM slots to a {@link MigrationDestination} over a stream: a full first round of every
 * page that holds anything (the kernel's answer: {@link SnapshotWriter#present}), then pre-copy rounds of the
 * pages written since the round before (the VMM's own writes merged with an external tracker's, KVM's dirty log or
 * ring: {@link GuestMemory#pagesToSend}), then the guest is paused ({@code pause}), the last dirty pages are sent,
 * and every page's CRC32C is compared on both sides.
 *
 * <h2>The convergence rule</h2>
 * After each pre-copy round the source looks at the pages dirtied during it, D, and the rate R at which that
 * round went out (pages per millisecond). Pre-copy stops, and the guest is paused, at the first of:
 * <ol>
 *   <li><b>converged</b>: D / R fits the downtime budget ({@link Options#downtimeBudgetMs}): the last round, sent
 *       with the guest stopped, should take no longer than that;</li>
 *   <li><b>not converging</b>: D is more than {@link Options#minShrink} of the round before's D (the guest dirties
 *       about as fast as the pages go out: more rounds would not shorten the pause);</li>
 *   <li><b>round limit</b>: {@link Options#maxRounds} pre-copy rounds were sent.</li>
 * </ol>
 * The reason is in {@link MigrationStats#stopReason}.
 *
 * <p>With {@link Options#postCopy} the pause is shorter: the last dirty set is not sent, only marked (with every
 * page's checksum at the switch), and the destination's guest runs at once and pulls those pages on demand
 * ({@link PostCopy}); {@code send} returns when the destination has them all. The source's memory must not
 * change until then (the guest stays paused): it holds the only copy of those pages.
 *
 * <p>The source only reads its memory: a failure (the peer gone, an I/O error) leaves it as it was and running,
 * apart from the pause the caller resumes; dirty bits collected before the failure are lost to a later
 * migration, which must start again with a full round.
 */
public final class MigrationSource {
    private MigrationSource() {}

    /**
     * @param maxRounds        pre-copy rounds after the full one, at the most
     * @param downtimeBudgetMs what the last round (with the guest paused) may take, estimated at the measured rate
     * @param minShrink        a round whose dirty set is more than this fraction of the previous one's ends pre-copy
     * @param postCopy         after pre-copy, switch at once and let the destination pull the last dirty pages on
     *                         demand (its guest runs meanwhile) instead of sending them with the guest paused
     */
    public record Options(int maxRounds, double downtimeBudgetMs, double minShrink, boolean postCopy) {
        public Options {
            if (maxRounds < 0 || downtimeBudgetMs < 0 || minShrink <= 0) throw new IllegalArgumentException(
                    "maxRounds " + maxRounds + ", downtimeBudgetMs " + downtimeBudgetMs + ", minShrink " + minShrink);
        }

        public Options(int maxRounds, double downtimeBudgetMs, double minShrink) {
            this(maxRounds, downtimeBudgetMs, minShrink, false);
        }

        /** 10 rounds, a 20 ms budget, and a round must at least shrink the dirty set by a tenth; no post-copy. */
        public static Options defaults() {
            return new Options(10, 20, 0.9, false);
        }

        public Options withPostCopy(boolean on) {
            return new Options(maxRounds, downtimeBudgetMs, minShrink, on);
        }
    }

    /**
     * Migrates {@code memory} over {@code ch}. {@code tracker} gives, per slot, the gfns an external dirty tracker
     * saw written since its last call (null for none: the VMM's own writes only); it is called once before the
     * first round to start from a clean log, then once per round. {@code pause} stops the guest (it returns when
     * no vCPU runs); the caller resumes it or not afterwards.
     *
     * @throws MigrationException the peer closed the stream or answered outside the format
     */
    public static MigrationStats send(GuestMemory memory, ByteChannel ch, Function<Memslot, long[]> tracker,
                                      Runnable pause, Options options) throws IOException {
        long t0 = System.nanoTime();
        long pageSize = memory.memslots().geometry().pageSize();
        List<RamSlot> ram = memory.ramSlots();
        List<SnapshotSlot> slots = new ArrayList<>();
        for (RamSlot r : ram) {
            slots.add(new SnapshotSlot(r.slot().id(), r.slot().addressSpace(), r.slot().baseGfn() * pageSize,
                    r.slot().npages() * pageSize, r.region().pageSize(), r.slot().flags(), r.region().backing().label(), 0, 0));
        }
        if (options.postCopy()) LazyRegions.checkRegistrable(slots); // the destination serves faults through userfaultfd
        MigrationWire wire = new MigrationWire(ch);
        wire.writeHeader(new MigrationWire.Header(pageSize, slots));
        Function<Memslot, long[]> external = tracker != null ? tracker : s -> null;
        memory.pagesToSend(external); // start clean: what is written from here on is in a later round

        try (Arena arena = Arena.ofConfined()) {
            Sender out = new Sender(memory, wire, arena, pageSize);
            List<Long> perRound = new ArrayList<>();
            // round 0: every page that holds anything; fresh memory at the destination is zero already
            long t = System.nanoTime();
            for (int i = 0; i < ram.size(); i++)
                for (long[] run : SnapshotWriter.present(ram.get(i), pageSize)) out.send(i, ram.get(i), run[0], run[1], true);
            perRound.add(out.endRound(0));
            double rate = rate(perRound.getLast(), t);
            String reason = null;
            long previous = Long.MAX_VALUE;
            int round = 1;
            List<DirtyPages> dirty;
            while (true) {
                dirty = memory.pagesToSend(external);
                long d = count(dirty);
                if (rate > 0 && d / rate <= options.downtimeBudgetMs()) reason = "converged: " + d + " dirty pages fit the "
                        + options.downtimeBudgetMs() + " ms budget at " + Math.round(rate) + " pages/ms";
                else if (previous != Long.MAX_VALUE && d > options.minShrink() * previous) reason = "not converging: " + d
                        + " dirty pages after " + previous;
                else if (round > options.maxRounds()) reason = "round limit " + options.maxRounds();
                if (reason != null) break;
                t = System.nanoTime();
                out.sendDirty(ram, dirty);
                perRound.add(out.endRound(round));
                rate = rate(perRound.getLast(), t);
                previous = d;
                round++;
            }
            // stop-and-copy: the last dirty set, what the guest wrote since, with the guest paused
            long tPause = System.nanoTime();
            pause.run();
            // the set that ended pre-copy and what was written since, once each (dirtyRuns merges overlapping runs)
            List<DirtyPages> last = new ArrayList<>(dirty);
            last.addAll(memory.pagesToSend(external));
            if (options.postCopy()) return postCopy(memory, wire, out, ram, last, perRound, round, reason, t0, tPause);
            out.sendDirty(ram, last);
            perRound.add(out.endRound(round));
            double downtime = (System.nanoTime() - tPause) / 1e6;
            // every page's checksum, compared by the destination
            for (int i = 0; i < ram.size(); i++) out.verify(i, ram.get(i));
            wire.writeRecord(DONE, NO_SLOT, 0, 0, null);
            MigrationWire.Head r = wire.readHead();
            if (r.kind() != RESULT) throw new MigrationException(wire.offset() - HEAD_BYTES, "expected RESULT, got kind " + r.kind());
            return new MigrationStats(round, perRound, out.pages, wire.bytesWritten(), downtime,
                    (System.nanoTime() - t0) / 1e6, r.a(), r.b(), reason, 0);
        }
    }

    /**
     * The switch of a post-copy migration, with the guest paused: every page's checksum, then per slot the pages
     * the destination must not take from pre-copy ({@code last}), then SWITCH; the destination's guest runs from
     * then on. Then the pages it asks for, until its RESULT: the source's memory must stay as it is meanwhile (the
     * guest paused), for it is the only copy of those pages.
     */
    private static MigrationStats postCopy(GuestMemory memory, MigrationWire wire, Sender out, List<RamSlot> ram,
                                           List<DirtyPages> last, List<Long> perRound, int round, String reason,
                                           long t0, long tPause) throws IOException {
        for (int i = 0; i < ram.size(); i++) out.verify(i, ram.get(i));
        long missing = 0;
        for (int i = 0; i < ram.size(); i++) {
            long n = ram.get(i).slot().npages();
            ByteBuffer bits = ByteBuffer.allocate(Math.toIntExact((n + 63) / 64 * 8)).order(ByteOrder.LITTLE_ENDIAN);
            for (long[] run : SnapshotWriter.dirtyRuns(ram.get(i), last)) {
                for (long p = run[0]; p < run[0] + run[1]; p++) {
                    int word = (int) (p >>> 6) * 8;
                    if ((bits.getLong(word) & (1L << p)) == 0) missing++;
                    bits.putLong(word, bits.getLong(word) | (1L << p));
                }
            }
            wire.writeRecord(POSTCOPY, i, n, 0, bits);
        }
        wire.writeRecord(SWITCH, NO_SLOT, round, missing, null);
        double downtime = (System.nanoTime() - tPause) / 1e6;
        long requests = 0;
        while (true) {
            long at = wire.offset();
            MigrationWire.Head r = wire.readHead();
            if (r.kind() == RESULT) {
                perRound.add(out.roundPages);
                return new MigrationStats(round, perRound, out.pages, wire.bytesWritten(), downtime,
                        (System.nanoTime() - t0) / 1e6, r.a(), r.b(), reason + "; post-copy of " + missing
                        + " pages, " + requests + " requests", out.roundPages);
            }
            if (r.kind() != REQUEST) throw new MigrationException(at, "expected REQUEST or RESULT, got kind " + r.kind());
            if (r.slot() < 0 || r.slot() >= ram.size()) throw new MigrationException(at + 4, "slot index " + r.slot());
            RamSlot s = ram.get(r.slot());
            if (r.a() < 0 || r.b() <= 0 || r.a() + r.b() > s.slot().npages())
                throw new MigrationException(at + 8, "pages " + r.a() + "+" + r.b() + " outside slot " + s.slot().id()
                        + " of " + s.slot().npages());
            out.send(r.slot(), s, r.a(), r.b(), false);
            requests++;
        }
    }

    private static double rate(long pages, long since) {
        double ms = (System.nanoTime() - since) / 1e6;
        return ms > 0 ? pages / ms : Double.MAX_VALUE;
    }

    private static long count(List<DirtyPages> dirty) {
        long n = 0;
        for (DirtyPages d : dirty) n += d.count();
        return n;
    }

    /** Reads pages through the accessors and writes them as DATA (or ZERO) records. */
    private static final class Sender {
        private final GuestMemory memory;
        private final MigrationWire wire;
        private final long pageSize;
        private final MemorySegment chunk, zeroPage;
        private final ByteBuffer chunkBuffer;
        long pages, roundPages;

        Sender(GuestMemory memory, MigrationWire wire, Arena arena, long pageSize) {
            this.memory = memory;
            this.wire = wire;
            this.pageSize = pageSize;
            long bytes = Math.max(pageSize, MAX_DATA_BYTES / pageSize * pageSize);
            chunk = arena.allocate(bytes, 4096);
            chunkBuffer = chunk.asByteBuffer();
            zeroPage = arena.allocate(pageSize, 4096);
        }

        void sendDirty(List<RamSlot> ram, List<DirtyPages> dirty) throws IOException {
            for (int i = 0; i < ram.size(); i++)
                for (long[] run : SnapshotWriter.dirtyRuns(ram.get(i), dirty)) send(i, ram.get(i), run[0], run[1], false);
        }

        /** Pages [first, first + n) of slot {@code index}; zero pages are skipped in the full round, sent as ZERO after. */
        void send(int index, RamSlot r, long first, long n, boolean skipZero) throws IOException {
            long gpa = r.slot().baseGfn() * pageSize;
            long perChunk = chunk.byteSize() / pageSize;
            for (long p = first; p < first + n; p += perChunk) {
                int k = (int) Math.min(perChunk, first + n - p);
                memory.read(gpa + p * pageSize, chunk.asSlice(0, k * pageSize));
                int i = 0;
                while (i < k) {
                    boolean zero = isZero(i);
                    int j = i + 1;
                    while (j < k && isZero(j) == zero) j++;
                    if (zero && !skipZero) wire.writeRecord(ZERO, index, p + i, j - i, null);
                    else if (!zero) wire.writeRecord(DATA, index, p + i, j - i,
                            chunkBuffer.slice((int) (i * pageSize), (int) ((j - i) * pageSize)));
                    if (!zero || !skipZero) {
                        pages += j - i;
                        roundPages += j - i;
                    }
                    i = j;
                }
            }
        }

        long endRound(int round) throws IOException {
            wire.writeRecord(ROUND_END, NO_SLOT, round, roundPages, null);
            long n = roundPages;
            roundPages = 0;
            return n;
        }

        void verify(int index, RamSlot r) throws IOException {
            long n = r.slot().npages();
            ByteBuffer crcs = ByteBuffer.allocate(Math.toIntExact(n * 4)).order(ByteOrder.LITTLE_ENDIAN);
            long gpa = r.slot().baseGfn() * pageSize;
            long perChunk = chunk.byteSize() / pageSize;
            CRC32C c = new CRC32C();
            for (long p = 0; p < n; p += perChunk) {
                int k = (int) Math.min(perChunk, n - p);
                memory.read(gpa + p * pageSize, chunk.asSlice(0, k * pageSize));
                for (int i = 0; i < k; i++) {
                    c.reset();
                    c.update(chunkBuffer.slice((int) (i * pageSize), (int) pageSize));
                    crcs.putInt((int) c.getValue());
                }
            }
            wire.writeRecord(VERIFY, index, n, 0, crcs.flip());
        }

        private boolean isZero(int page) {
            return chunk.asSlice(page * pageSize, pageSize).mismatch(zeroPage) == -1;
        }
    }
}
