package io.guestmem.snapshot;

import static io.guestmem.snapshot.SnapshotFormat.CHUNK_BYTES;

import io.guestmem.access.GuestMemory;
import io.guestmem.access.RamSlot;
import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePageSize;
import io.guestmem.kvm.KvmVm;
import io.guestmem.vm.VmMemory;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * Brings guest memory back from a chain of snapshots (a full one, then the increments taken on top of it, in
 * order): eagerly into fresh regions of the recorded backings ({@link #eager}), or into memory the caller
 * built with the same layout ({@link #into}). Every page's bytes are checked against their record's checksum
 * before they are written.
 */
public final class SnapshotRestore {
    private SnapshotRestore() {}

    /**
     * Creates a region of each slot's recorded backing and size, a {@link VmMemory} (mirrored into {@code vm},
     * or none when null) with the recorded slots, and restores {@code chain} into it. On any failure (a corrupt
     * or truncated file, a short hugetlb pool, a KVM refusal) everything built is closed again: nothing stays
     * mapped.
     */
    public static RestoredMemory eager(List<Snapshot> chain, KvmVm vm) throws IOException {
        SnapshotManifest m = checkChain(chain);
        List<HostRegion> regions = new ArrayList<>();
        VmMemory memory = new VmMemory(vm);
        try {
            if (memory.memslots().geometry().pageSize() != m.pageSize())
                throw new SnapshotLayoutException("the snapshot's page size is " + m.pageSize() + ", this machine's "
                        + memory.memslots().geometry().pageSize());
            for (SnapshotSlot s : m.slots()) {
                if (s.addressSpace() != memory.memory().addressSpace())
                    throw new SnapshotLayoutException("slot " + s.slotId() + " is in address space " + s.addressSpace()
                            + ": restore it into memory you built (into())");
                HostRegion r = create(s);
                regions.add(r);
                memory.memory().addRam(s.slotId(), s.gpa(), r, 0, s.size(), s.memslotFlags());
            }
            RestoreStats stats = into(memory.memory(), chain);
            return new RestoredMemory(memory, regions, stats);
        } catch (IOException | RuntimeException | Error e) {
            try {
                new RestoredMemory(memory, regions, null).close();
            } catch (RuntimeException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    /**
     * A fresh region of the slot's recorded backing (what a restore, or a migration's destination, maps);
     * {@link SnapshotLayoutException} for a backing no restore can create on its own.
     */
    public static HostRegion create(SnapshotSlot s) {
        Backing b = s.backing();
        if (b == null) throw new SnapshotLayoutException("slot " + s.slotId() + ": unknown backing '" + s.backingLabel() + "'");
        return switch (b) {
            case ANON -> HostRegion.anonymous(s.size()).create();
            case ANON_SHARED -> HostRegion.anonymousShared(s.size()).create();
            case THP -> HostRegion.thp(s.size()).create();
            case HUGETLB_2M, HUGETLB_1G, HUGETLB_OTHER -> HostRegion.hugetlb(s.size(), new HugePageSize(s.hostPageSize())).create();
            case MEMFD -> HostRegion.memfd(s.size()).create();
            case MEMFD_HUGETLB -> HostRegion.memfdHugetlb(s.size(), new HugePageSize(s.hostPageSize())).create();
            case SECRET -> HostRegion.secret(s.size()).create();
            case GUEST_MEMFD, FD, PFNMAP -> throw new SnapshotLayoutException("slot " + s.slotId() + " was backed by "
                    + b.label() + ", which a restore cannot create on its own: build the memory and restore into() it");
        };
    }

    /**
     * Restores {@code chain} into {@code memory}, whose RAM slots must be the snapshots' (ids, address spaces,
     * gpas, sizes; the backing may differ) or {@link SnapshotLayoutException} is thrown before anything is
     * written. Afterwards every page reads what it held when the last snapshot of the chain was taken: data
     * pages are written, and pages the chain says are zero (recorded zeros, or absent from the full snapshot)
     * are zeroed only where the target holds data (the kernel's answer), so untouched pages stay untouched.
     * A corrupt record found midway throws {@link SnapshotFormatException}; the pages before it are restored
     * (the target is the caller's: {@link #eager} releases its own).
     */
    public static RestoreStats into(GuestMemory memory, List<Snapshot> chain) throws IOException {
        long t0 = System.nanoTime();
        SnapshotManifest m = checkChain(chain);
        List<RamSlot> ram = memory.ramSlots();
        long pageSize = memory.memslots().geometry().pageSize();
        checkLayout(m, ram, pageSize);
        ByteBuffer buf = ByteBuffer.allocateDirect(Math.max(CHUNK_BYTES, (int) pageSize));
        MemorySegment seg = MemorySegment.ofBuffer(buf);
        long written = 0, zeroed = 0, bytes = 0;
        for (int k = 0; k < chain.size(); k++) {
            Snapshot s = chain.get(k);
            // Pages of each slot to zero: held data in the target and are zero (or absent, for the base) here.
            long[][] toZero = new long[ram.size()][];
            for (int i = 0; i < ram.size(); i++) {
                long npages = ram.get(i).slot().npages();
                long[] present = new long[(int) ((npages + 63) >>> 6)];
                for (long[] run : SnapshotWriter.present(ram.get(i), pageSize)) set(present, run[0], run[1], true);
                if (k == 0) toZero[i] = present; // the full snapshot: all but its data pages
                else toZero[i] = new long[present.length];
                for (Snapshot.Run r : s.runs()) {
                    if (r.slotIndex() != i) continue;
                    if (r.zero() && k > 0) setMasked(toZero[i], present, r.firstPage(), r.pages());
                    if (!r.zero() && k == 0) set(toZero[i], r.firstPage(), r.pages(), false);
                }
            }
            for (int i = 0; i < ram.size(); i++) {
                long gpa = ram.get(i).slot().baseGfn() * pageSize;
                long[] z = toZero[i];
                long npages = ram.get(i).slot().npages();
                for (long p = 0; p < npages; p++) {
                    if ((z[(int) (p >>> 6)] & (1L << p)) == 0) continue;
                    long q = p;
                    while (q < npages && (z[(int) (q >>> 6)] & (1L << q)) != 0) q++;
                    memory.fill(gpa + p * pageSize, (q - p) * pageSize, (byte) 0);
                    zeroed += q - p;
                    p = q;
                }
            }
            for (Snapshot.Run r : s.runs()) {
                if (r.zero()) continue;
                long len = (long) r.pages() * pageSize;
                checkedRead(s, r, buf, r.dataOffset(), len);
                memory.write(ram.get(r.slotIndex()).slot().baseGfn() * pageSize + r.firstPage() * pageSize, seg.asSlice(0, len));
                written += r.pages();
                bytes += len;
            }
        }
        return new RestoreStats(chain.size(), written, zeroed, bytes, (System.nanoTime() - t0) / 1e6);
    }

    /** Reads a DATA record's bytes into {@code b} (from position 0) and checks them against its checksum. */
    static void checkedRead(Snapshot s, Snapshot.Run r, ByteBuffer b, long offset, long len) throws IOException {
        b.clear().limit((int) len);
        while (b.hasRemaining()) {
            int n = s.channel().read(b, offset + b.position());
            if (n < 0) throw new SnapshotFormatException(s.file(), offset + b.position(), "truncated in a DATA record");
        }
        b.flip();
        CRC32C c = new CRC32C();
        c.update(b.duplicate());
        if ((int) c.getValue() != r.crc())
            throw new SnapshotFormatException(s.file(), offset, "page data checksum mismatch (" + r.pages() + " pages of slot index "
                    + r.slotIndex() + " from page " + r.firstPage() + ")");
    }

    /** The chain's layout, after checking it is a full snapshot followed by its increments in order. */
    static SnapshotManifest checkChain(List<Snapshot> chain) {
        if (chain.isEmpty()) throw new SnapshotLayoutException("no snapshot to restore");
        SnapshotManifest first = chain.get(0).manifest();
        if (first.incremental())
            throw new SnapshotLayoutException(chain.get(0) + " is an increment: restore its base first");
        for (int i = 1; i < chain.size(); i++) {
            SnapshotManifest prev = chain.get(i - 1).manifest(), m = chain.get(i).manifest();
            if (m.baseId() != prev.id())
                throw new SnapshotLayoutException(chain.get(i) + " is not an increment on " + chain.get(i - 1));
            if (!m.sameLayoutAs(first))
                throw new SnapshotLayoutException(chain.get(i) + " has another layout than " + chain.get(0));
        }
        return chain.get(chain.size() - 1).manifest();
    }

    private static void checkLayout(SnapshotManifest m, List<RamSlot> ram, long pageSize) {
        StringBuilder why = new StringBuilder();
        if (m.pageSize() != pageSize) why.append("page size ").append(m.pageSize()).append(" vs ").append(pageSize).append("; ");
        if (m.slots().size() != ram.size()) why.append(m.slots().size()).append(" slots vs ").append(ram.size()).append("; ");
        for (int i = 0; i < Math.min(m.slots().size(), ram.size()); i++) {
            SnapshotSlot s = m.slots().get(i);
            RamSlot r = ram.get(i);
            if (s.slotId() != r.slot().id() || s.addressSpace() != r.slot().addressSpace() || s.gpa() != r.slot().baseGfn() * pageSize
                    || s.size() != r.slot().npages() * pageSize)
                why.append("slot ").append(s.slotId()).append(" at 0x").append(Long.toHexString(s.gpa())).append(" of ")
                        .append(s.size()).append(" bytes vs slot ").append(r.slot().id()).append(" at 0x")
                        .append(Long.toHexString(r.slot().baseGfn() * pageSize)).append(" of ").append(r.slot().npages() * pageSize)
                        .append(" bytes; ");
        }
        if (!why.isEmpty()) throw new SnapshotLayoutException("the memory's layout is not the snapshot's: " + why);
    }

    private static void set(long[] bits, long first, long n, boolean on) {
        for (long p = first; p < first + n; p++) {
            if (on) bits[(int) (p >>> 6)] |= 1L << p; else bits[(int) (p >>> 6)] &= ~(1L << p);
        }
    }

    private static void setMasked(long[] bits, long[] mask, long first, long n) {
        for (long p = first; p < first + n; p++) bits[(int) (p >>> 6)] |= mask[(int) (p >>> 6)] & (1L << p);
    }
}
