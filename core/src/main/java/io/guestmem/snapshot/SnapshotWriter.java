package io.guestmem.snapshot;

import static io.guestmem.snapshot.SnapshotFormat.*;

import io.guestmem.access.DirtyPages;
import io.guestmem.access.SparseWords;
import io.guestmem.access.GuestMemory;
import io.guestmem.access.RamSlot;
import io.guestmem.host.HostRegion;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapScan;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import io.guestmem.sys.UnlinkedFile;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * Writes a {@link GuestMemory}'s RAM slots to a snapshot file: only pages that hold data. Which pages hold
 * anything is the kernel's answer, not a read of every page: {@code PAGEMAP_SCAN} (present or swapped) for
 * private memory, {@code SEEK_DATA}/{@code SEEK_HOLE} on the file for fd-backed memory (shmem and hugetlbfs
 * keep pages in their page cache that this process may not map). Those pages are read through the
 * accessors (so private guest_memfd pages are refused, never faulted into the host); a page that reads all
 * zero is recorded, not written.
 *
 * <p>The file is written as an unnamed file in the target's directory ({@code O_TMPFILE}), fsync'ed, then
 * given its final name ({@code linkat}; over an existing snapshot, linked under a temporary name and renamed)
 * and the directory fsync'ed: a crash at any point leaves either no file or a complete one under the final
 * name, never half a snapshot, and nothing else: an unnamed file dies with the process that wrote it. On any
 * failure nothing new is left in the directory.
 *
 * <p>The guest should be stopped (or its writes tracked, for an incremental snapshot after this one): pages
 * written while the writer walks are saved at whichever value the walk read.
 */
public final class SnapshotWriter {
    private static final SecureRandom IDS = new SecureRandom();
    private static final String TMP = ".tmp-";

    private SnapshotWriter() {}

    /** A full snapshot of every RAM slot of {@code memory} to {@code target}. */
    public static SnapshotInfo write(GuestMemory memory, Path target) throws IOException {
        return write(memory, target, null, null);
    }

    /**
     * An incremental snapshot on top of {@code base}: only the pages in {@code dirty} (a
     * {@link GuestMemory#pagesToSend} answer: the VMM's writes merged with a dirty tracker's), each written as
     * data or recorded as zero. The memory's layout must be the base's ({@link SnapshotLayoutException}).
     */
    public static SnapshotInfo writeIncremental(GuestMemory memory, Snapshot base, List<DirtyPages> dirty, Path target)
            throws IOException {
        return write(memory, target, base.manifest(), dirty);
    }

    private static SnapshotInfo write(GuestMemory memory, Path target, SnapshotManifest base, List<DirtyPages> dirty)
            throws IOException {
        long t0 = System.nanoTime();
        long pageSize = memory.memslots().geometry().pageSize();
        List<RamSlot> ram = memory.ramSlots();
        List<SnapshotSlot> slots = new ArrayList<>();
        for (RamSlot r : ram) {
            HostRegion region = r.region();
            slots.add(new SnapshotSlot(r.slot().id(), r.slot().addressSpace(), r.slot().baseGfn() * pageSize,
                    r.slot().npages() * pageSize, region.pageSize(), r.slot().flags(), region.backing().label(), 0, 0));
        }
        long id;
        do id = IDS.nextLong(); while (id == 0);
        SnapshotManifest manifest = new SnapshotManifest(id, base == null ? 0 : base.id(), pageSize,
                System.currentTimeMillis(), slots);
        if (base != null && !manifest.sameLayoutAs(base))
            throw new SnapshotLayoutException("the memory's slots are not the base snapshot's: base " + base.slots()
                    + ", memory " + slots);

        Path dir = target.toAbsolutePath().getParent();
        sweepStaleTemporaries(dir, target);
        String tmpName = "." + target.getFileName() + TMP + ProcessHandle.current().pid() + "-" + Long.toHexString(id);
        UnlinkedFile unnamed = unnamedIn(dir);
        Path tmp = unnamed != null ? null : dir.resolve(tmpName);
        long untouched = 0;
        try (FileChannel ch = unnamed != null ? FileChannel.open(unnamed.procPath(), StandardOpenOption.WRITE)
                : FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
             Arena arena = Arena.ofConfined()) {
            long pos = HEADER_BYTES + (long) SLOT_BYTES * slots.size();
            ch.position(pos);
            Walk walk = new Walk(memory, ch, arena, pageSize);
            for (int i = 0; i < ram.size(); i++) {
                RamSlot r = ram.get(i);
                long npages = r.slot().npages();
                List<long[]> runs = base == null ? present(r, pageSize) : dirtyRuns(r, dirty);
                walk.data = 0;
                walk.zero = 0;
                for (long[] run : runs) walk.save(i, r.slot().baseGfn() * pageSize, run[0], run[1]);
                slots.set(i, slots.get(i).withCounts(walk.data, walk.zero));
                if (base == null) untouched += npages - walk.data - walk.zero;
            }
            write(ch, record(KIND_END, -1, walk.records, 0, 0));
            manifest = new SnapshotManifest(id, manifest.baseId(), pageSize, manifest.createdMillis(), slots);
            ByteBuffer m = manifest(manifest);
            int mcrc = crc(m, 0, m.limit());
            ch.position(0);
            write(ch, header(manifest, mcrc));
            write(ch, m);
            ch.force(true);
            if (unnamed != null) tmp = publish(unnamed, target, dir.resolve(tmpName));
        } catch (IOException | RuntimeException | Error e) {
            try {
                if (tmp != null) Files.deleteIfExists(tmp);
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        } finally {
            if (unnamed != null) unnamed.close(); // never linked: the kernel frees it here
        }
        if (tmp != null) {
            try {
                Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (IOException | RuntimeException e) {
                Files.deleteIfExists(tmp);
                throw e;
            }
        }
        try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
            d.force(true); // the link or rename itself reaches the disk
        }
        long bytes = Files.size(target);
        return new SnapshotInfo(target, manifest, manifest.dataPages(), manifest.zeroPages(), untouched, bytes,
                (System.nanoTime() - t0) / 1e6);
    }

    /**
     * An unnamed file in {@code dir} ({@code O_TMPFILE}), or null where the filesystem has none (then a named
     * temporary file is the fallback, and a crash can leave it, until a later write to the same target sweeps it).
     */
    private static UnlinkedFile unnamedIn(Path dir) {
        try {
            return UnlinkedFile.create(dir);
        } catch (SyscallException e) {
            if (e.errno() == Errno.EOPNOTSUPP.number || e.errno() == Errno.EISDIR.number) return null;
            throw e;
        }
    }

    /**
     * Gives the complete file its final name. A new name is one {@code linkat}: atomic, and nothing is left
     * named if the process dies before it. Replacing an existing snapshot needs a rename (link cannot replace):
     * the file is linked under {@code tmp} and the caller renames it over the target, so only a death in the
     * two system calls between leaves a temporary name, which the next write to that target sweeps. Returns
     * the name the caller still has to rename, or null when the file is in place.
     */
    private static Path publish(UnlinkedFile file, Path target, Path tmp) {
        try {
            file.linkTo(target);
            return null;
        } catch (SyscallException e) {
            if (e.errno() != Errno.EEXIST.number) throw e;
        }
        file.linkTo(tmp);
        return tmp;
    }

    /** Removes the temporary names a writer of {@code target} left when it died between link and rename. */
    private static void sweepStaleTemporaries(Path dir, Path target) throws IOException {
        String prefix = "." + target.getFileName() + TMP;
        try (DirectoryStream<Path> s = Files.newDirectoryStream(dir, p -> p.getFileName().toString().startsWith(prefix))) {
            for (Path p : s) {
                String rest = p.getFileName().toString().substring(prefix.length());
                int dash = rest.indexOf('-');
                long pid;
                try {
                    pid = Long.parseLong(dash < 0 ? rest : rest.substring(0, dash));
                } catch (NumberFormatException e) {
                    continue; // not a name this writer makes
                }
                if (ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)) continue;
                Files.deleteIfExists(p);
            }
        }
    }

    /**
     * The runs {first page, pages} of a slot that hold anything, slot-relative, ascending: the kernel's answer
     * (PAGEMAP_SCAN for private memory, SEEK_DATA/SEEK_HOLE for a file), what a snapshot or a migration's first
     * round sends.
     */
    public static List<long[]> present(RamSlot r, long pageSize) {
        HostRegion region = r.region();
        long len = r.slot().npages() * pageSize;
        List<long[]> out = new ArrayList<>();
        if (region.fd().isPresent()) {
            // A file's data is its page cache and swap, mapped here or not.
            int fd = region.fd().getAsInt();
            long start = region.fdOffset() + r.regionOffset(), end = start + len;
            long at = start;
            while (at < end) {
                long data = Posix.lseek(fd, at, Posix.SEEK_DATA);
                if (data < 0 || data >= end) break;
                long hole = Math.min(end, Posix.lseek(fd, data, Posix.SEEK_HOLE));
                long first = (data - start) / pageSize, last = (hole - start + pageSize - 1) / pageSize;
                out.add(new long[] {first, last - first});
                at = hole;
            }
            return out;
        }
        long hva = r.slot().userspaceAddr();
        try (Pagemap pm = Pagemap.openSelf(); PagemapScan scan = PagemapScan.open(pm)) {
            for (PagemapScan.Region g : scan.scanAll(hva, hva + len, 0, 0, 0,
                    PagemapScan.PRESENT | PagemapScan.SWAPPED, PagemapScan.PRESENT | PagemapScan.SWAPPED)) {
                long first = (g.start() - hva) / pageSize, last = (g.end() - hva + pageSize - 1) / pageSize;
                out.add(new long[] {first, last - first});
            }
        }
        return merge(out);
    }

    /** The dirty runs {first page, pages} of a slot from a pagesToSend answer, slot-relative, ascending. */
    public static List<long[]> dirtyRuns(RamSlot r, List<DirtyPages> dirty) {
        List<long[]> out = new ArrayList<>();
        if (dirty == null) return out;
        for (DirtyPages d : dirty) {
            if (d.slotId() != r.slot().id()) continue;
            // the runs of each non-zero word (merge() joins those that continue into the next word)
            SparseWords w = d.words();
            long shift = d.baseGfn() - r.slot().baseGfn();
            for (int k = 0; k < w.words(); k++) {
                long v = w.bits(k), base = (long) w.index(k) << 6;
                while (v != 0) {
                    int from = Long.numberOfTrailingZeros(v);
                    int to = Long.numberOfTrailingZeros(~(v | ((1L << from) - 1))); // first clear bit above from (64: none)
                    out.add(new long[] {shift + base + from, to - from});
                    v = to == 64 ? 0 : v & (-1L << to);
                }
            }
        }
        return merge(out);
    }

    private static List<long[]> merge(List<long[]> runs) {
        runs.sort((a, b) -> Long.compare(a[0], b[0]));
        List<long[]> out = new ArrayList<>();
        for (long[] r : runs) {
            long[] last = out.isEmpty() ? null : out.get(out.size() - 1);
            if (last != null && r[0] <= last[0] + last[1]) last[1] = Math.max(last[1], r[0] + r[1] - last[0]);
            else out.add(r.clone());
        }
        return out;
    }

    static void write(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) ch.write(b);
    }

    /** Reads runs in chunks and writes DATA records of the non-zero pages, ZERO records of the zero ones. */
    private static final class Walk {
        private final GuestMemory memory;
        private final FileChannel ch;
        private final long pageSize;
        private final MemorySegment chunk, zeroPage;
        private final ByteBuffer chunkBuffer;
        private final CRC32C crc = new CRC32C();
        long records, data, zero;

        Walk(GuestMemory memory, FileChannel ch, Arena arena, long pageSize) {
            this.memory = memory;
            this.ch = ch;
            this.pageSize = pageSize;
            long bytes = Math.max(pageSize, CHUNK_BYTES / pageSize * pageSize);
            chunk = arena.allocate(bytes, 4096);
            chunkBuffer = chunk.asByteBuffer();
            zeroPage = arena.allocate(pageSize, 4096);
        }

        void save(int slotIndex, long slotGpa, long firstPage, long pages) throws IOException {
            long perChunk = chunk.byteSize() / pageSize;
            for (long p = firstPage; p < firstPage + pages; p += perChunk) {
                int n = (int) Math.min(perChunk, firstPage + pages - p);
                memory.read(slotGpa + p * pageSize, chunk.asSlice(0, n * pageSize));
                int i = 0;
                while (i < n) {
                    boolean isZero = isZero(i);
                    int j = i + 1;
                    while (j < n && isZero(j) == isZero) j++;
                    if (isZero) {
                        write(ch, record(KIND_ZERO, slotIndex, p + i, j - i, 0));
                        zero += j - i;
                    } else {
                        ByteBuffer pagesBuf = chunkBuffer.slice((int) (i * pageSize), (int) ((j - i) * pageSize));
                        crc.reset();
                        crc.update(pagesBuf.duplicate());
                        write(ch, record(KIND_DATA, slotIndex, p + i, j - i, (int) crc.getValue()));
                        write(ch, pagesBuf);
                        data += j - i;
                    }
                    records++;
                    i = j;
                }
            }
        }

        private boolean isZero(int page) {
            return chunk.asSlice(page * pageSize, pageSize).mismatch(zeroPage) == -1;
        }
    }
}
