package io.guestmem.snapshot;

import io.guestmem.sys.UnixSocket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * The wire format between a VMM and a page-fault handler in another process (the protocol is in this package's
 * documentation): the handoff message the VMM sends once, with the userfaultfd and the backing files, and the
 * records the handler answers with. One place encodes and decodes both.
 */
final class UffdHandoff {
    static final byte[] MAGIC = "GMUFFDv1".getBytes(StandardCharsets.US_ASCII);
    static final int HEADER = 32, RANGE = 64, REPLY = 16, MAX_RANGES = UnixSocket.MAX_FDS - 1, MAX_TEXT = 4096;
    static final int READY = 1, REFUSED = 2, POISONED = 3, COMPLETE = 4;
    static final int FLAG_HUGETLB = 1;

    private UffdHandoff() {}

    /** One range as the VMM describes it; {@code fdIndex} is -1 (private memory) or the descriptor's place (from 1). */
    record RangeEntry(int slotId, int fdIndex, long gpa, long size, long hva, long fdOffset, long hostPageSize,
                      int flags, int addressSpace) {
        boolean hugetlb() {
            return (flags & FLAG_HUGETLB) != 0;
        }
    }

    /** The handoff: the memory's layout as the VMM built it, and the userfaultfd's features. */
    record Message(long pageSize, long uffdFeatures, List<RangeEntry> ranges) {}

    /** One record of the handler's answer. */
    record Reply(int kind, long value, byte[] payload) {
        String text() {
            return new String(payload, StandardCharsets.UTF_8);
        }
    }

    static ByteBuffer encode(Message m) {
        ByteBuffer b = ByteBuffer.allocate(HEADER + RANGE * m.ranges().size() + 4).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MAGIC).putInt(m.ranges().size()).putInt(0).putLong(m.pageSize()).putLong(m.uffdFeatures());
        for (RangeEntry r : m.ranges()) {
            b.putInt(r.slotId()).putInt(r.fdIndex()).putLong(r.gpa()).putLong(r.size()).putLong(r.hva())
                    .putLong(r.fdOffset()).putLong(r.hostPageSize()).putInt(r.flags()).putInt(r.addressSpace()).putLong(0);
        }
        b.putInt(crc(b.array(), b.position()));
        return b.flip();
    }

    /**
     * Reads the handoff from {@code conn}: the descriptors (at most {@code MAX_RANGES + 1}) come with its first
     * byte. On any refusal every descriptor received is closed before the exception leaves.
     */
    static Received receive(UnixSocket conn) {
        ByteBuffer head = ByteBuffer.allocate(HEADER).order(ByteOrder.LITTLE_ENDIAN);
        UnixSocket.Received first = conn.receive(head, MAX_RANGES + 1);
        int[] fds = first.fds();
        try {
            if (first.endOfStream()) throw new UffdHandoffException("the VMM closed the socket before the handoff", 0);
            if (!conn.readFully(head)) throw new UffdHandoffException("the handoff ends inside its header", head.position());
            head.flip();
            byte[] magic = new byte[8];
            head.get(magic);
            if (!java.util.Arrays.equals(magic, MAGIC)) throw new UffdHandoffException("not a guestmem userfaultfd handoff (magic)", 0);
            int n = head.getInt();
            if (n < 1 || n > MAX_RANGES) throw new UffdHandoffException(n + " ranges (1 to " + MAX_RANGES + ")", 8);
            ByteBuffer all = ByteBuffer.allocate(HEADER + RANGE * n + 4).order(ByteOrder.LITTLE_ENDIAN);
            all.put(head.rewind());
            if (!conn.readFully(all)) throw new UffdHandoffException("the handoff ends inside its ranges", all.position());
            int end = HEADER + RANGE * n;
            if (all.getInt(end) != crc(all.array(), end)) throw new UffdHandoffException("the handoff fails its CRC32C", end);
            all.position(12);
            all.getInt();
            long pageSize = all.getLong(), features = all.getLong();
            List<RangeEntry> ranges = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                int at = all.position();
                RangeEntry r = new RangeEntry(all.getInt(), all.getInt(), all.getLong(), all.getLong(), all.getLong(),
                        all.getLong(), all.getLong(), all.getInt(), all.getInt());
                all.getLong();
                if (r.fdIndex() == 0 || r.fdIndex() < -1 || r.fdIndex() >= fds.length)
                    throw new UffdHandoffException("range " + i + " names descriptor " + r.fdIndex() + " of " + fds.length, at + 4);
                ranges.add(r);
            }
            if (fds.length == 0) throw new UffdHandoffException("the handoff carries no userfaultfd", 0);
            return new Received(new Message(pageSize, features, ranges), fds);
        } catch (RuntimeException | Error e) {
            for (int fd : fds) io.guestmem.sys.Posix.close(fd);
            throw e;
        }
    }

    /** The handoff as received, with the descriptors it carried ({@code fds[0]} is the userfaultfd). */
    record Received(Message message, int[] fds) {}

    static void send(UnixSocket conn, int kind, long value, byte[] payload) {
        ByteBuffer b = ByteBuffer.allocate(REPLY + payload.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(kind).putInt(payload.length).putLong(value).put(payload);
        conn.send(b.flip());
    }

    static void send(UnixSocket conn, int kind, long value, String text) {
        byte[] t = text.getBytes(StandardCharsets.UTF_8);
        send(conn, kind, value, t.length > MAX_TEXT ? java.util.Arrays.copyOf(t, MAX_TEXT) : t);
    }

    /** The next record, or null at the end of the stream. */
    static Reply read(UnixSocket conn) {
        ByteBuffer h = ByteBuffer.allocate(REPLY).order(ByteOrder.LITTLE_ENDIAN);
        if (!conn.readFully(h)) {
            if (h.position() == 0) return null;
            throw new UffdHandoffException("the handler's record ends inside its header", h.position());
        }
        h.flip();
        int kind = h.getInt(), len = h.getInt();
        long value = h.getLong();
        if (kind < READY || kind > COMPLETE || len < 0 || len > MAX_TEXT)
            throw new UffdHandoffException("a handler record of kind " + kind + " and length " + len, 0);
        ByteBuffer p = ByteBuffer.allocate(len);
        if (!conn.readFully(p)) throw new UffdHandoffException("the handler's record ends inside its payload", REPLY + p.position());
        return new Reply(kind, value, p.array());
    }

    /** The handler's statistics as a COMPLETE record's payload: ten 8-byte values, in {@link LazyRestoreStats}' order. */
    static byte[] encode(LazyRestoreStats s) {
        return ByteBuffer.allocate(80).order(ByteOrder.LITTLE_ENDIAN).putLong(s.faultsServed()).putLong(s.accessorServed())
                .putLong(s.prefetched()).putLong(s.zeroBlocks()).putLong(s.blocksServed()).putLong(s.dataBlocks())
                .putLong(s.bytesRead()).putDouble(s.firstFaultMicros()).putDouble(s.restoreMs()).putLong(s.failures()).array();
    }

    static LazyRestoreStats decodeStats(byte[] p) {
        if (p.length != 80) throw new UffdHandoffException("a COMPLETE record of " + p.length + " bytes (80)", REPLY);
        ByteBuffer b = ByteBuffer.wrap(p).order(ByteOrder.LITTLE_ENDIAN);
        return new LazyRestoreStats(b.getLong(), b.getLong(), b.getLong(), b.getLong(), b.getLong(), b.getLong(),
                b.getLong(), b.getDouble(), b.getDouble(), b.getLong());
    }

    private static int crc(byte[] a, int len) {
        CRC32C c = new CRC32C();
        c.update(a, 0, len);
        return (int) c.getValue();
    }
}
