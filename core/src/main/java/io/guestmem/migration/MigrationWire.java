package io.guestmem.migration;

import io.guestmem.snapshot.SnapshotSlot;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.ByteChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * One side's end of a migration stream ({@code package-info} has the format): framing, checksums and the
 * stream offset every error names. Not thread-safe: one migration, one thread.
 */
final class MigrationWire {
    static final byte[] MAGIC = "GMMIGv1\0".getBytes(StandardCharsets.US_ASCII);
    static final int SLOT_BYTES = 64, LABEL_BYTES = 24, HEAD_BYTES = 32, NO_SLOT = -1;
    static final int DATA = 1, ZERO = 2, ROUND_END = 3, VERIFY = 4, DONE = 5, RESULT = 6, POSTCOPY = 7, SWITCH = 8,
            REQUEST = 9;
    /** The most a DATA record holds, as a snapshot's: 64 KiB of pages. */
    static final long MAX_DATA_BYTES = 64 << 10;

    /** A record head. */
    record Head(int kind, int slot, long a, long b, int bodyCrc) {}

    /** The header's content. */
    record Header(long pageSize, List<SnapshotSlot> slots) {}

    private final ByteChannel ch;
    private final ByteBuffer head = ByteBuffer.allocate(HEAD_BYTES).order(ByteOrder.LITTLE_ENDIAN);
    private final CRC32C crc = new CRC32C();
    private long offset, bytes;

    MigrationWire(ByteChannel ch) {
        this.ch = ch;
    }

    /** Bytes read or written so far: the offset of the next one. */
    long offset() {
        return offset;
    }

    /** Bytes written so far. */
    long bytesWritten() {
        return bytes;
    }

    static int crc(ByteBuffer b) {
        CRC32C c = new CRC32C();
        c.update(b.duplicate());
        return (int) c.getValue();
    }

    // ------------------------------------------------------------------ writing

    void writeHeader(Header h) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(16 + SLOT_BYTES * h.slots().size() + 4).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MAGIC).putInt((int) h.pageSize()).putInt(h.slots().size());
        for (SnapshotSlot s : h.slots()) {
            byte[] label = s.backingLabel().getBytes(StandardCharsets.US_ASCII);
            if (label.length > LABEL_BYTES) throw new IllegalArgumentException("backing label too long: " + s.backingLabel());
            b.putInt(s.slotId()).putInt(s.addressSpace()).putLong(s.gpa()).putLong(s.size()).putLong(s.hostPageSize())
                    .putInt(s.memslotFlags()).putInt(label.length).put(Arrays.copyOf(label, LABEL_BYTES));
        }
        b.putInt(crc(b.duplicate().flip()));
        write(b.flip());
    }

    void writeRecord(int kind, int slot, long a, long b, ByteBuffer body) throws IOException {
        head.clear();
        head.putInt(kind).putInt(slot).putLong(a).putLong(b).putInt(body == null ? 0 : crc(body));
        head.putInt(crc(head.duplicate().flip()));
        write(head.flip());
        if (body != null) write(body.duplicate());
    }

    private void write(ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            int n;
            try {
                n = ch.write(b);
            } catch (IOException e) { // the peer went away: typed, with the offset, as a failed read is
                throw new MigrationException(offset, "writing to the peer: " + e.getMessage(), e);
            }
            offset += n;
            bytes += n;
        }
    }

    // ------------------------------------------------------------------ reading

    Header readHeader() throws IOException {
        ByteBuffer fixed = read(16, "the header");
        byte[] magic = new byte[MAGIC.length];
        fixed.get(magic);
        if (!Arrays.equals(magic, MAGIC)) throw new MigrationException(0, "not a guestmem migration stream (magic "
                + new String(magic, StandardCharsets.ISO_8859_1) + ")");
        long pageSize = Integer.toUnsignedLong(fixed.getInt());
        int n = fixed.getInt();
        if (pageSize == 0 || Long.bitCount(pageSize) != 1) throw new MigrationException(8, "page size " + pageSize);
        if (n < 0 || n > 65536) throw new MigrationException(12, "slot count " + n);
        ByteBuffer rest = read(SLOT_BYTES * n + 4, "the slot table");
        crc.reset();
        crc.update(fixed.flip());
        crc.update(rest.duplicate().limit(SLOT_BYTES * n));
        int want = rest.getInt(SLOT_BYTES * n);
        if ((int) crc.getValue() != want) throw new MigrationException(16 + SLOT_BYTES * n, "header checksum mismatch");
        List<SnapshotSlot> slots = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int id = rest.getInt(), as = rest.getInt();
            long gpa = rest.getLong(), size = rest.getLong(), hps = rest.getLong();
            int flags = rest.getInt(), len = rest.getInt();
            byte[] label = new byte[LABEL_BYTES];
            rest.get(label);
            if (len < 0 || len > LABEL_BYTES) throw new MigrationException(16 + SLOT_BYTES * i + 36, "label length " + len);
            slots.add(new SnapshotSlot(id, as, gpa, size, hps, flags, new String(label, 0, len, StandardCharsets.US_ASCII), 0, 0));
        }
        return new Header(pageSize, slots);
    }

    /** The next record head, checked; EOF is a {@link MigrationException} (the peer went away mid-migration). */
    Head readHead() throws IOException {
        long at = offset;
        ByteBuffer b = read(HEAD_BYTES, "a record");
        if (b.getInt(28) != crc(b.duplicate().limit(28))) throw new MigrationException(at, "record head checksum mismatch");
        return new Head(b.getInt(0), b.getInt(4), b.getLong(8), b.getLong(16), b.getInt(24));
    }

    /** Reads a record's body of {@code n} bytes into {@code dst} (position 0, limit n) and checks it. */
    void readBody(Head h, ByteBuffer dst, int n) throws IOException {
        long at = offset;
        dst.clear().limit(n);
        readFully(dst, "a record body");
        dst.flip();
        if (crc(dst) != h.bodyCrc()) throw new MigrationException(at, "record body checksum mismatch (kind " + h.kind()
                + ", slot " + h.slot() + ", a " + h.a() + ")");
    }

    private ByteBuffer read(int n, String what) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n).order(ByteOrder.LITTLE_ENDIAN);
        readFully(b, what);
        return b.flip();
    }

    private void readFully(ByteBuffer b, String what) throws IOException {
        while (b.hasRemaining()) {
            int n;
            try {
                n = ch.read(b);
            } catch (IOException e) {
                throw new MigrationException(offset, "reading " + what + ": " + e.getMessage(), e);
            }
            if (n < 0) throw new MigrationException(offset, "the peer closed the stream in " + what);
            offset += n;
        }
    }
}
