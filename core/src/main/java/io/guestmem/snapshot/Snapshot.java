package io.guestmem.snapshot;

import static io.guestmem.snapshot.SnapshotFormat.*;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * An open snapshot file whose structure has been checked: header, manifest and every record header with their
 * checksums, record bounds against the slots, the END record as the file's last bytes. The pages' own
 * checksums are checked as a restore reads them ({@link #verify()} checks them all at once). A file that fails
 * any check is refused with {@link SnapshotFormatException} naming the offset.
 */
public final class Snapshot implements AutoCloseable {

    /**
     * One record: {@code pages} pages of slot {@code slotIndex} (manifest order) from slot-relative page
     * {@code firstPage}; a DATA run's bytes are at {@code dataOffset} with CRC32C {@code crc}.
     */
    public record Run(boolean zero, int slotIndex, long firstPage, int pages, long dataOffset, int crc) {}

    private final Path file;
    private final FileChannel ch;
    private final SnapshotManifest manifest;
    private final List<Run> runs;
    private final List<List<Run>> bySlot; // each slot's runs by first page

    private Snapshot(Path file, FileChannel ch, SnapshotManifest manifest, List<Run> runs) {
        this.file = file;
        this.ch = ch;
        this.manifest = manifest;
        this.runs = runs;
        List<List<Run>> b = new ArrayList<>();
        for (int i = 0; i < manifest.slots().size(); i++) b.add(new ArrayList<>());
        for (Run r : runs) b.get(r.slotIndex()).add(r);
        for (List<Run> l : b) l.sort(java.util.Comparator.comparingLong(Run::firstPage));
        bySlot = b.stream().map(List::copyOf).toList();
    }

    /** Opens and checks {@code file}; the caller closes it. */
    public static Snapshot open(Path file) throws IOException {
        FileChannel ch = FileChannel.open(file, StandardOpenOption.READ);
        try {
            long size = ch.size();
            ByteBuffer h = readAt(file, ch, 0, HEADER_BYTES, "the header");
            if (!Arrays.equals(Arrays.copyOf(h.array(), MAGIC.length), MAGIC))
                throw new SnapshotFormatException(file, 0, "not a guestmem snapshot (magic "
                        + new String(h.array(), 0, MAGIC.length, StandardCharsets.ISO_8859_1) + ")");
            if (h.getInt(60) != crc(h, 0, 60)) throw new SnapshotFormatException(file, 60, "header checksum mismatch");
            int version = h.getInt(8);
            if (version != VERSION) throw new SnapshotFormatException(file, 8, "version " + version + ", this library reads " + VERSION);
            int flags = h.getInt(12), pageSize = h.getInt(16), nslots = h.getInt(20);
            long id = h.getLong(24), baseId = h.getLong(32), created = h.getLong(40);
            int manifestCrc = h.getInt(48);
            if (pageSize <= 0 || Integer.bitCount(pageSize) != 1) throw new SnapshotFormatException(file, 16, "page size " + pageSize);
            if (nslots < 0 || nslots > 32768) throw new SnapshotFormatException(file, 20, "slot count " + nslots);
            if (((flags & FLAG_INCREMENTAL) != 0) != (baseId != 0))
                throw new SnapshotFormatException(file, 12, "flags " + flags + " do not match base id " + baseId);
            ByteBuffer m = readAt(file, ch, HEADER_BYTES, SLOT_BYTES * nslots, "the manifest");
            if (crc(m, 0, m.limit()) != manifestCrc) throw new SnapshotFormatException(file, HEADER_BYTES, "manifest checksum mismatch");
            List<SnapshotSlot> slots = new ArrayList<>();
            for (int i = 0; i < nslots; i++) {
                int at = i * SLOT_BYTES;
                int labelLen = m.getInt(at + 52);
                if (labelLen < 0 || labelLen > MAX_BACKING_LABEL)
                    throw new SnapshotFormatException(file, HEADER_BYTES + at + 52, "backing label length " + labelLen);
                String label = new String(m.array(), at + 56, labelLen, StandardCharsets.US_ASCII);
                SnapshotSlot s = new SnapshotSlot(m.getInt(at), m.getInt(at + 4), m.getLong(at + 8), m.getLong(at + 16),
                        m.getLong(at + 24), m.getInt(at + 48), label, m.getLong(at + 32), m.getLong(at + 40));
                if (s.size() <= 0 || s.size() % pageSize != 0 || s.gpa() % pageSize != 0)
                    throw new SnapshotFormatException(file, HEADER_BYTES + at, "slot " + s.slotId() + " gpa/size not in pages: " + s);
                slots.add(s);
            }
            SnapshotManifest manifest = new SnapshotManifest(id, baseId, pageSize, created, slots);

            List<Run> runs = new ArrayList<>();
            long[] data = new long[nslots], zero = new long[nslots];
            long pos = HEADER_BYTES + (long) SLOT_BYTES * nslots;
            while (true) {
                if (size - pos < RECORD_BYTES)
                    throw new SnapshotFormatException(file, pos, "truncated: no END record (file ends at 0x" + Long.toHexString(size) + ")");
                ByteBuffer r = readAt(file, ch, pos, RECORD_BYTES, "a record header");
                if (r.getInt(28) != crc(r, 0, 28)) throw new SnapshotFormatException(file, pos, "record header checksum mismatch");
                int kind = r.getInt(0), slot = r.getInt(4), pages = r.getInt(16), dcrc = r.getInt(20);
                long first = r.getLong(8);
                if (kind == KIND_END) {
                    if (first != runs.size())
                        throw new SnapshotFormatException(file, pos, "END counts " + first + " records, the file has " + runs.size());
                    if (pos + RECORD_BYTES != size)
                        throw new SnapshotFormatException(file, pos + RECORD_BYTES, "bytes after the END record");
                    break;
                }
                if (kind != KIND_DATA && kind != KIND_ZERO) throw new SnapshotFormatException(file, pos, "record kind " + kind);
                if (slot < 0 || slot >= nslots) throw new SnapshotFormatException(file, pos + 4, "slot index " + slot);
                long npages = slots.get(slot).pages(pageSize);
                if (pages <= 0 || first < 0 || first + pages > npages)
                    throw new SnapshotFormatException(file, pos + 8, "pages " + first + "+" + pages + " outside slot "
                            + slots.get(slot).slotId() + " (" + npages + " pages)");
                long dataOffset = pos + RECORD_BYTES;
                long bytes = kind == KIND_DATA ? (long) pages * pageSize : 0;
                if (bytes > Math.max(pageSize, CHUNK_BYTES)) // the writer's records are at most one chunk
                    throw new SnapshotFormatException(file, pos + 16, "a DATA record of " + pages + " pages is larger than "
                            + CHUNK_BYTES + " bytes");
                if (size - dataOffset < bytes)
                    throw new SnapshotFormatException(file, size, "truncated: a DATA record of " + bytes + " bytes at 0x"
                            + Long.toHexString(dataOffset) + " ends past the file's end");
                runs.add(new Run(kind == KIND_ZERO, slot, first, pages, dataOffset, dcrc));
                if (kind == KIND_DATA) data[slot] += pages; else zero[slot] += pages;
                pos = dataOffset + bytes;
            }
            for (int i = 0; i < nslots; i++) {
                SnapshotSlot s = slots.get(i);
                if (s.dataPages() != data[i] || s.zeroPages() != zero[i])
                    throw new SnapshotFormatException(file, HEADER_BYTES + (long) i * SLOT_BYTES + 32, "slot " + s.slotId()
                            + " counts " + s.dataPages() + " data / " + s.zeroPages() + " zero pages, its records " + data[i] + " / " + zero[i]);
            }
            return new Snapshot(file, ch, manifest, List.copyOf(runs));
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
    }

    private static ByteBuffer readAt(Path file, FileChannel ch, long pos, int len, String what) throws IOException {
        ByteBuffer b = buffer(len);
        while (b.hasRemaining()) {
            int n = ch.read(b, pos + b.position());
            if (n < 0) throw new SnapshotFormatException(file, pos + b.position(), "truncated in " + what);
        }
        return b.rewind();
    }

    public Path file() {
        return file;
    }

    public SnapshotManifest manifest() {
        return manifest;
    }

    /** The records in file order. */
    public List<Run> runs() {
        return runs;
    }

    /** The records of slot {@code slotIndex} (manifest order), by first page. */
    List<Run> runsOfSlot(int slotIndex) {
        return bySlot.get(slotIndex);
    }

    FileChannel channel() {
        return ch;
    }

    /** Reads every DATA record and checks its checksum; throws at the first mismatch. */
    public void verify() throws IOException {
        ByteBuffer b = ByteBuffer.allocateDirect(Math.max(CHUNK_BYTES, (int) manifest.pageSize()));
        for (Run r : runs) {
            if (r.zero()) continue;
            SnapshotRestore.checkedRead(this, r, b, r.dataOffset(), (long) r.pages() * manifest.pageSize());
        }
    }

    @Override
    public void close() throws IOException {
        ch.close();
    }

    @Override
    public String toString() {
        return "snapshot " + file + " (" + (manifest.incremental() ? "incremental" : "full") + ", "
                + manifest.slots().size() + " slots, " + manifest.dataPages() + " data pages)";
    }
}
