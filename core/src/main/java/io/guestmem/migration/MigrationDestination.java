package io.guestmem.migration;

import static io.guestmem.migration.MigrationWire.*;

import io.guestmem.access.GuestMemory;
import io.guestmem.host.HostRegion;
import io.guestmem.kvm.KvmVm;
import io.guestmem.mmu.FollowPfnOptions;
import io.guestmem.snapshot.RestorePolicy;
import io.guestmem.snapshot.RestoreStats;
import io.guestmem.snapshot.RestoredMemory;
import io.guestmem.snapshot.SnapshotLayoutException;
import io.guestmem.snapshot.SnapshotRestore;
import io.guestmem.snapshot.SnapshotSlot;
import io.guestmem.vm.VmMemory;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ByteChannel;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * Receives a migration from a {@link MigrationSource}: builds fresh regions of the sent backings with the sent
 * slots (mirrored into {@code vm}, none when null), fills them round by round, compares every page's checksum
 * with the source's and answers how many agree. On any failure (the peer gone, a bad record) everything it
 * built is released before the exception leaves.
 *
 * <p>A post-copy migration returns at the switch: the memory is usable and the guest may run at once, while a
 * {@link PostCopy} pulls the pages the source still holds over the same channel (the caller keeps it open until
 * {@link PostCopy#awaitComplete} is true).
 */
public final class MigrationDestination {
    private MigrationDestination() {}

    /**
     * The memory received and what the migration did (up to the switch, for a post-copy one). Close the memory
     * when done with it.
     *
     * @param postCopy what still pulls pages from the source, null when every page has arrived
     */
    public record Received(RestoredMemory memory, MigrationStats stats, PostCopy postCopy) {}

    public static Received receive(ByteChannel ch, KvmVm vm) throws IOException {
        return receive(ch, vm, true);
    }

    /**
     * As {@link #receive(ByteChannel, KvmVm)}; without {@code pullInBackground} a post-copy brings pages only when
     * the guest or an accessor touches them, until {@link PostCopy#pullRest} (to see the guest's own faults served,
     * or to let it run first on a slow link).
     */
    public static Received receive(ByteChannel ch, KvmVm vm, boolean pullInBackground) throws IOException {
        long t0 = System.nanoTime();
        MigrationWire wire = new MigrationWire(ch);
        MigrationWire.Header h = wire.readHeader();
        // the host's accessors are governed from the start, so that a post-copy can bring pages in before they
        // touch them; until then (and for good without post-copy) they go straight through
        RestorePolicy policy = new RestorePolicy(h.slots().stream().map(SnapshotSlot::slotId).toList());
        policy.attach((slot, gfn, write) -> {});
        VmMemory memory = new VmMemory(vm, FollowPfnOptions.defaults(), policy);
        List<HostRegion> regions = new ArrayList<>();
        RestoredMemory built = new RestoredMemory(memory, regions, null);
        try {
            if (memory.memslots().geometry().pageSize() != h.pageSize())
                throw new SnapshotLayoutException("the source's page size is " + h.pageSize() + ", this machine's "
                        + memory.memslots().geometry().pageSize());
            for (SnapshotSlot s : h.slots()) {
                HostRegion r = SnapshotRestore.create(s);
                regions.add(r);
                memory.memory().addRam(s.slotId(), s.gpa(), r, 0, s.size(), s.memslotFlags());
            }
            built = new RestoredMemory(memory, regions, null);
            Rounds rounds = new Rounds(wire, memory.memory(), h);
            int end = rounds.fill();
            if (end == SWITCH) {
                MigrationStats atSwitch = rounds.stats(wire, t0);
                PostCopy post = PostCopy.begin(wire, ch, h, memory.memory(), regions, rounds.crcs, rounds.missing,
                        policy, atSwitch, t0, pullInBackground);
                RestoredMemory done = new RestoredMemory(memory, regions, new RestoreStats(0, rounds.pages, 0,
                        wire.offset(), (System.nanoTime() - t0) / 1e6), post);
                return new Received(done, atSwitch, post);
            }
            policy.complete();
            long[] agree = rounds.verifyAll();
            wire.writeRecord(RESULT, NO_SLOT, agree[0], agree[1], null);
            RestoredMemory done = new RestoredMemory(memory, regions, new RestoreStats(0, rounds.pages, 0,
                    wire.offset(), (System.nanoTime() - t0) / 1e6));
            return new Received(done, new MigrationStats(rounds.rounds(false), rounds.perRound, rounds.pages, wire.offset(),
                    -1, (System.nanoTime() - t0) / 1e6, agree[0], agree[1], null, 0), null);
        } catch (IOException | RuntimeException | Error e) {
            try {
                built.close();
            } catch (RuntimeException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    /** The records up to DONE (every page sent) or SWITCH (post-copy from here), into the memory. */
    private static final class Rounds {
        final MigrationWire wire;
        final GuestMemory memory;
        final MigrationWire.Header h;
        final long pageSize;
        final List<Long> perRound = new ArrayList<>();
        final int[][] crcs;      // per slot index, the source's checksum of each page at the switch
        final long[][] missing;  // per slot index, the pages post-copy must bring (a bitmap), null before POSTCOPY
        long pages;

        Rounds(MigrationWire wire, GuestMemory memory, MigrationWire.Header h) {
            this.wire = wire;
            this.memory = memory;
            this.h = h;
            pageSize = h.pageSize();
            crcs = new int[h.slots().size()][];
            missing = new long[h.slots().size()][];
        }

        /** Pre-copy rounds, as the source counts them: the last ROUND_END (after the pause) is not one. */
        int rounds(boolean postCopy) {
            return postCopy ? perRound.size() : Math.max(0, perRound.size() - 1);
        }

        MigrationStats stats(MigrationWire wire, long t0) {
            return new MigrationStats(rounds(true), perRound, pages, wire.offset(), -1, (System.nanoTime() - t0) / 1e6,
                    0, 0, null, 0);
        }

        /** Reads records until DONE or SWITCH, checked for order; returns which. */
        int fill() throws IOException {
            ByteBuffer body = ByteBuffer.allocateDirect((int) Math.max(MAX_DATA_BYTES, pageSize)).order(ByteOrder.LITTLE_ENDIAN);
            int verified = 0, postCopy = 0;
            while (true) {
                long at = wire.offset();
                MigrationWire.Head r = wire.readHead();
                SnapshotSlot s = null;
                if (r.kind() == DATA || r.kind() == ZERO || r.kind() == VERIFY || r.kind() == POSTCOPY) {
                    if (r.slot() < 0 || r.slot() >= h.slots().size()) throw new MigrationException(at + 4, "slot index " + r.slot());
                    s = h.slots().get(r.slot());
                }
                long npages = s == null ? 0 : s.size() / pageSize;
                switch (r.kind()) {
                    case DATA, ZERO -> {
                        long n = r.b();
                        if (r.a() < 0 || n <= 0 || r.a() + n > npages || (r.kind() == DATA && n * pageSize > body.capacity()))
                            throw new MigrationException(at + 8, "pages " + r.a() + "+" + n + " outside slot " + s.slotId()
                                    + " of " + npages);
                        if (verified > 0) throw new MigrationException(at, "pages after the checksums");
                        long gpa = s.gpa() + r.a() * pageSize;
                        if (r.kind() == DATA) {
                            wire.readBody(r, body, (int) (n * pageSize));
                            memory.write(gpa, body);
                        } else {
                            memory.fill(gpa, n * pageSize, (byte) 0);
                        }
                        pages += n;
                    }
                    case ROUND_END -> perRound.add(r.b());
                    case VERIFY -> {
                        if (r.a() != npages) throw new MigrationException(at + 8, "checksums of " + r.a() + " pages for a slot of " + npages);
                        if (crcs[r.slot()] != null) throw new MigrationException(at, "a second VERIFY for slot " + s.slotId());
                        ByteBuffer b = ByteBuffer.allocate(Math.toIntExact(npages * 4)).order(ByteOrder.LITTLE_ENDIAN);
                        wire.readBody(r, b, b.capacity());
                        crcs[r.slot()] = new int[(int) npages];
                        b.asIntBuffer().get(crcs[r.slot()]);
                        verified++;
                    }
                    case POSTCOPY -> {
                        if (verified != h.slots().size()) throw new MigrationException(at, "POSTCOPY before every slot's checksums");
                        if (r.a() != npages || missing[r.slot()] != null)
                            throw new MigrationException(at + 8, "POSTCOPY of " + r.a() + " pages for slot " + s.slotId() + " of " + npages);
                        ByteBuffer b = ByteBuffer.allocate(Math.toIntExact((npages + 63) / 64 * 8)).order(ByteOrder.LITTLE_ENDIAN);
                        wire.readBody(r, b, b.capacity());
                        missing[r.slot()] = new long[b.capacity() / 8];
                        b.asLongBuffer().get(missing[r.slot()]);
                        postCopy++;
                    }
                    case DONE, SWITCH -> {
                        if (verified != h.slots().size())
                            throw new MigrationException(at, (r.kind() == DONE ? "DONE" : "SWITCH") + " after checksums of "
                                    + verified + " of " + h.slots().size() + " slots");
                        if (r.kind() == SWITCH && postCopy != h.slots().size())
                            throw new MigrationException(at, "SWITCH after the post-copy pages of " + postCopy + " of "
                                    + h.slots().size() + " slots");
                        if (r.kind() == DONE && postCopy != 0) throw new MigrationException(at, "DONE after POSTCOPY");
                        return r.kind();
                    }
                    default -> throw new MigrationException(at, "unknown record kind " + r.kind());
                }
            }
        }

        /** Every page's checksum against the source's: {agree, checked}. */
        long[] verifyAll() {
            long agree = 0, checked = 0;
            CRC32C c = new CRC32C();
            ByteBuffer page = ByteBuffer.allocateDirect((int) pageSize);
            for (int i = 0; i < h.slots().size(); i++) {
                SnapshotSlot s = h.slots().get(i);
                for (int p = 0; p < crcs[i].length; p++) {
                    page.clear();
                    memory.read(s.gpa() + p * pageSize, page);
                    c.reset();
                    c.update(page.flip());
                    if ((int) c.getValue() == crcs[i][p]) agree++;
                    checked++;
                }
            }
            return new long[] {agree, checked};
        }
    }
}
