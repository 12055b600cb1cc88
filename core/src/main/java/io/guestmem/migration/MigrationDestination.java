package io.guestmem.migration;

import static io.guestmem.migration.MigrationWire.*;

import io.guestmem.access.GuestMemory;
import io.guestmem.host.HostRegion;
import io.guestmem.kvm.KvmVm;
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
 */
public final class MigrationDestination {
    private MigrationDestination() {}

    /** The memory received and what the migration did. Close the memory when done with it. */
    public record Received(RestoredMemory memory, MigrationStats stats) {}

    public static Received receive(ByteChannel ch, KvmVm vm) throws IOException {
        long t0 = System.nanoTime();
        MigrationWire wire = new MigrationWire(ch);
        MigrationWire.Header h = wire.readHeader();
        VmMemory memory = new VmMemory(vm);
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
            MigrationStats stats = fill(wire, memory.memory(), h);
            wire.writeRecord(RESULT, NO_SLOT, stats.agree(), stats.checked(), null);
            RestoredMemory done = new RestoredMemory(memory, regions, new RestoreStats(0, stats.pagesSent(), 0,
                    wire.offset(), (System.nanoTime() - t0) / 1e6));
            return new Received(done, new MigrationStats(stats.rounds(), stats.pagesPerRound(), stats.pagesSent(),
                    wire.offset(), -1, (System.nanoTime() - t0) / 1e6, stats.agree(), stats.checked(), null));
        } catch (IOException | RuntimeException | Error e) {
            try {
                built.close();
            } catch (RuntimeException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    private static MigrationStats fill(MigrationWire wire, GuestMemory memory, MigrationWire.Header h) throws IOException {
        long pageSize = h.pageSize();
        ByteBuffer body = ByteBuffer.allocateDirect((int) Math.max(MAX_DATA_BYTES, pageSize)).order(ByteOrder.LITTLE_ENDIAN);
        List<Long> perRound = new ArrayList<>();
        long pages = 0, agree = 0, checked = 0;
        int verified = 0;
        CRC32C c = new CRC32C();
        ByteBuffer page = ByteBuffer.allocateDirect((int) pageSize);
        while (true) {
            long at = wire.offset();
            MigrationWire.Head r = wire.readHead();
            SnapshotSlot s = null;
            if (r.kind() == DATA || r.kind() == ZERO || r.kind() == VERIFY) {
                if (r.slot() < 0 || r.slot() >= h.slots().size()) throw new MigrationException(at + 4, "slot index " + r.slot());
                s = h.slots().get(r.slot());
            }
            switch (r.kind()) {
                case DATA, ZERO -> {
                    long n = r.b(), npages = s.size() / pageSize;
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
                    long n = s.size() / pageSize;
                    if (r.a() != n) throw new MigrationException(at + 8, "checksums of " + r.a() + " pages for a slot of " + n);
                    ByteBuffer crcs = ByteBuffer.allocate(Math.toIntExact(n * 4)).order(ByteOrder.LITTLE_ENDIAN);
                    wire.readBody(r, crcs, crcs.capacity());
                    for (long p = 0; p < n; p++) {
                        page.clear();
                        memory.read(s.gpa() + p * pageSize, page);
                        page.flip();
                        c.reset();
                        c.update(page);
                        if ((int) c.getValue() == crcs.getInt()) agree++;
                        checked++;
                    }
                    verified++;
                }
                case DONE -> {
                    if (verified != h.slots().size())
                        throw new MigrationException(at, "DONE after checksums of " + verified + " of " + h.slots().size() + " slots");
                    int rounds = Math.max(0, perRound.size() - 1);
                    return new MigrationStats(rounds, perRound, pages, 0, -1, 0, agree, checked, null);
                }
                default -> throw new MigrationException(at, "unknown record kind " + r.kind());
            }
        }
    }
}
