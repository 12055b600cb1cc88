package io.guestmem.snapshot;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32C;

/**
 * The one place that knows the snapshot file's bytes (little-endian; the layout is in {@code package-info}):
 * a 64-byte header, 80 bytes of manifest per slot, then records of a 32-byte header each (DATA records
 * followed by their pages), closed by an END record that is the file's last 32 bytes.
 */
final class SnapshotFormat {
    private SnapshotFormat() {}

    static final byte[] MAGIC = "GMSNAPv1".getBytes(StandardCharsets.US_ASCII);
    static final int VERSION = 1;
    static final int HEADER_BYTES = 64, SLOT_BYTES = 80, RECORD_BYTES = 32;
    static final int FLAG_INCREMENTAL = 1;
    static final int KIND_DATA = 1, KIND_ZERO = 2, KIND_END = 0x21444E45; // "END!"
    static final int MAX_BACKING_LABEL = 24;
    /**
     * A DATA record holds at most this many bytes of pages (or one page, if larger): what a lazy restore reads
     * and checks to serve one fault, so small enough to keep that fast, large enough to keep records few.
     */
    static final int CHUNK_BYTES = 64 << 10;

    static ByteBuffer buffer(int bytes) {
        return ByteBuffer.allocate(bytes).order(ByteOrder.LITTLE_ENDIAN);
    }

    static int crc(ByteBuffer b, int from, int to) {
        CRC32C c = new CRC32C();
        c.update(b.array(), b.arrayOffset() + from, to - from);
        return (int) c.getValue();
    }

    static ByteBuffer header(SnapshotManifest m, int manifestCrc) {
        ByteBuffer b = buffer(HEADER_BYTES);
        b.put(MAGIC).putInt(VERSION).putInt(m.baseId() != 0 ? FLAG_INCREMENTAL : 0).putInt((int) m.pageSize())
                .putInt(m.slots().size()).putLong(m.id()).putLong(m.baseId()).putLong(m.createdMillis())
                .putInt(manifestCrc);
        b.putInt(60, crc(b, 0, 60));
        return b.rewind();
    }

    static ByteBuffer manifest(SnapshotManifest m) {
        ByteBuffer b = buffer(SLOT_BYTES * m.slots().size());
        for (SnapshotSlot s : m.slots()) {
            byte[] label = s.backingLabel().getBytes(StandardCharsets.US_ASCII);
            if (label.length > MAX_BACKING_LABEL) throw new IllegalArgumentException("backing label too long: " + s.backingLabel());
            b.putInt(s.slotId()).putInt(s.addressSpace()).putLong(s.gpa()).putLong(s.size()).putLong(s.hostPageSize())
                    .putLong(s.dataPages()).putLong(s.zeroPages()).putInt(s.memslotFlags()).putInt(label.length)
                    .put(label).put(new byte[MAX_BACKING_LABEL - label.length]);
        }
        return b.rewind();
    }

    static ByteBuffer record(int kind, int slotIndex, long firstPage, int pages, int dataCrc) {
        ByteBuffer b = buffer(RECORD_BYTES);
        b.putInt(kind).putInt(slotIndex).putLong(firstPage).putInt(pages).putInt(dataCrc).putInt(0);
        b.putInt(28, crc(b, 0, 28));
        return b.rewind();
    }
}
