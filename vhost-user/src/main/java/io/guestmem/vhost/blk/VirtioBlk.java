package io.guestmem.vhost.blk;

import io.guestmem.access.GuestBuffers;
import io.guestmem.access.GuestMemory;
import io.guestmem.access.GuestMemoryException;
import io.guestmem.sys.ErrnoException;
import io.guestmem.vhost.Features;
import io.guestmem.vhost.VhostUserDevice;
import io.guestmem.vhost.queue.DescriptorChain;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * A virtio-blk device (virtio 1.x 5.2) over a {@link RawImage}: read, write, flush, discard, write-zeroes
 * and get-id, one queue. A request is {@code struct virtio_blk_req}: a 16-byte header ({@code le32 type,
 * le32 reserved, le64 sector}) in the device-readable part, the data, and a status byte, the last byte of the
 * device-writable part; framing across descriptors is free (VERSION_1's any layout).
 *
 * <p>Every failure ends in a status, never past the request: a malformed chain, a buffer outside guest RAM,
 * a range past the image, an I/O error of the file are {@link #S_IOERR}; a type it does not serve, or a flag
 * it did not offer, {@link #S_UNSUPP}. When the status byte itself is not writable guest RAM the request is
 * not carried out and completes with nothing written. A malformed chain's status is the last device-writable
 * byte its walk reached before the fault (none reached: nothing written); a driver that framed the request
 * as it should finds it there. The data of a read must be device-writable and that of a write
 * device-readable (else IOERR), and GET_ID needs room for the whole 20-byte id.
 */
public final class VirtioBlk implements VhostUserDevice {
    private static final System.Logger LOG = System.getLogger(VirtioBlk.class.getName());

    public static final int T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11, T_WRITE_ZEROES = 13;
    public static final int S_OK = 0, S_IOERR = 1, S_UNSUPP = 2;
    public static final long F_SEG_MAX = 1L << 2, F_BLK_SIZE = 1L << 6, F_FLUSH = 1L << 9, F_DISCARD = 1L << 13,
            F_WRITE_ZEROES = 1L << 14;
    public static final int SECTOR = 512, ID_BYTES = 20, HEADER = 16, SEGMENT = 16;
    /** What one discard or write-zeroes request may span (64 MiB) and how many ranges it may carry. */
    static final int MAX_RANGE_SECTORS = 1 << 17, MAX_SEGMENTS = 1;
    /** The config space up to {@code write_zeroes_may_unmap} (struct virtio_blk_config). */
    static final int CONFIG_BYTES = 60;

    private final RawImage image;
    private final byte[] id;
    private final int queueSize;
    private long[] gpas = new long[0], lens = new long[0];
    // one request at a time (the session's thread): the header and the ranges are read into these
    private final byte[] header = new byte[HEADER], segments = new byte[SEGMENT * MAX_SEGMENTS];
    private final ByteBuffer hb = ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN),
            sb = ByteBuffer.wrap(segments).order(ByteOrder.LITTLE_ENDIAN);

    /** A device over {@code image} whose GET_ID answers {@code serial} (its first 20 bytes, NUL-padded), for queues of {@code queueSize}. */
    public VirtioBlk(RawImage image, String serial, int queueSize) {
        this.image = image;
        this.id = Arrays.copyOf(serial.getBytes(StandardCharsets.US_ASCII), ID_BYTES); // cut or NUL-padded to 20
        this.queueSize = queueSize;
    }

    @Override
    public long features() {
        return Features.VERSION_1 | Features.RING_INDIRECT_DESC | Features.RING_EVENT_IDX
                | F_SEG_MAX | F_BLK_SIZE | F_FLUSH | F_DISCARD | F_WRITE_ZEROES;
    }

    @Override
    public int queues() {
        return 1;
    }

    public long capacitySectors() {
        return image.size() / SECTOR;
    }

    @Override
    public byte[] config(int offset, int size) {
        ByteBuffer c = ByteBuffer.allocate(CONFIG_BYTES).order(ByteOrder.LITTLE_ENDIAN);
        c.putLong(0, capacitySectors());
        c.putInt(12, queueSize - 2);        // seg_max: a chain keeps room for the header and the status
        c.putInt(20, SECTOR);               // blk_size
        c.putShort(34, (short) queues());   // num_queues
        c.putInt(36, MAX_RANGE_SECTORS);    // max_discard_sectors
        c.putInt(40, MAX_SEGMENTS);         // max_discard_seg
        c.putInt(44, 4096 / SECTOR);        // discard_sector_alignment
        c.putInt(48, MAX_RANGE_SECTORS);    // max_write_zeroes_sectors
        c.putInt(52, MAX_SEGMENTS);         // max_write_zeroes_seg
        c.put(56, (byte) 1);                // write_zeroes_may_unmap
        byte[] out = new byte[size];
        if (offset < CONFIG_BYTES) System.arraycopy(c.array(), offset, out, 0, Math.min(size, CONFIG_BYTES - offset));
        return out;
    }

    @Override
    public int process(int queue, GuestMemory mem, DescriptorChain chain) {
        long status = chain.lastWritableByte();
        // the status byte first, IOERR until the request is done: a request that could not tell the driver
        // how it went is not done at all (QEMU maps every buffer of a chain, the status too, before it starts
        // one), and one that stops half-way reads as failed
        if (status < 0 || !put(mem, status, S_IOERR)) return 0;
        int s, written = 0;
        if (!chain.ok() || chain.readableBytes() < HEADER || chain.writableBytes() < 1) {
            LOG.log(System.Logger.Level.DEBUG, () -> "virtio-blk: refused " + chain);
            s = S_IOERR;
        } else {
            try {
                chain.readReadable(mem, 0, header);
                int type = hb.getInt(0);
                long sector = hb.getLong(8);
                long data = chain.writableBytes() - 1;
                switch (type) {
                    case T_IN -> {
                        // the data of a read is device-writable: a readable buffer after the header is the
                        // driver's mistake (or a trick), not room for the sectors
                        s = chain.readableBytes() != HEADER ? S_IOERR : transfer(mem, chain, sector, true, data);
                        if (s == S_OK) written = (int) data;
                    }
                    case T_OUT -> s = data != 0 ? S_IOERR : transfer(mem, chain, sector, false, chain.readableBytes() - HEADER);
                    case T_FLUSH -> {
                        image.flush();
                        s = S_OK;
                    }
                    case T_GET_ID -> {
                        // the id is 20 bytes, NUL-padded: a shorter buffer cannot hold it (cloud-hypervisor and
                        // crosvm answer IOERR too)
                        s = data < ID_BYTES ? S_IOERR : S_OK;
                        if (s == S_OK) {
                            chain.writeWritable(mem, 0, id, ID_BYTES);
                            written = ID_BYTES;
                        }
                    }
                    case T_DISCARD, T_WRITE_ZEROES -> s = ranges(mem, chain, type);
                    default -> s = S_UNSUPP;
                }
            } catch (GuestMemoryException | ErrnoException e) {
                LOG.log(System.Logger.Level.DEBUG, () -> "virtio-blk: I/O error for " + chain + ": " + e.getMessage());
                s = S_IOERR;
                written = 0;
            }
        }
        return put(mem, status, s) ? written + 1 : 0;
    }

    /** Writes the status byte; false when it is not writable guest RAM (nothing to tell the driver then). */
    private static boolean put(GuestMemory mem, long status, int s) {
        try {
            mem.writeU8(status, s);
            return true;
        } catch (GuestMemoryException e) {
            return false;
        }
    }

    /** A read (into the writable part) or write (from the readable part after the header) of whole sectors. */
    private int transfer(GuestMemory mem, DescriptorChain chain, long sector, boolean in, long bytes) {
        if (bytes % SECTOR != 0 || sector < 0 || sector > capacitySectors() || !image.contains(sector * SECTOR, bytes))
            return S_IOERR;
        room(chain.buffers());
        int n = chain.range(in, in ? 0 : HEADER, bytes, gpas, lens); // a read fills the device-writable part
        GuestBuffers bufs = mem.buffers(gpas, lens, n, in);
        if (in) image.read(mem, sector * SECTOR, bufs);
        else image.write(mem, sector * SECTOR, bufs);
        return S_OK;
    }

    /** DISCARD and WRITE_ZEROES: {@code le64 sector, le32 num_sectors, le32 flags} ranges after the header. */
    private int ranges(GuestMemory mem, DescriptorChain chain, int type) {
        long bytes = chain.readableBytes() - HEADER;
        if (bytes == 0 || bytes % SEGMENT != 0 || bytes / SEGMENT > MAX_SEGMENTS) return S_IOERR;
        chain.readReadable(mem, HEADER, segments, (int) bytes); // at most MAX_SEGMENTS of them: checked above
        for (int at = 0; at < bytes; at += SEGMENT) { // every range checked before any is done
            long sector = sb.getLong(at), count = Integer.toUnsignedLong(sb.getInt(at + 8));
            int flags = sb.getInt(at + 12);
            if ((flags & ~1) != 0 || (type == T_DISCARD && (flags & 1) != 0)) return S_UNSUPP;
            if (count > MAX_RANGE_SECTORS || sector < 0 || sector > capacitySectors() || !image.contains(sector * SECTOR, count * SECTOR))
                return S_IOERR;
        }
        for (int at = 0; at < bytes; at += SEGMENT) {
            long offset = sb.getLong(at) * SECTOR, len = Integer.toUnsignedLong(sb.getInt(at + 8)) * SECTOR;
            if (type == T_DISCARD) image.discard(offset, len);
            else image.writeZeroes(offset, len, (sb.getInt(at + 12) & 1) != 0);
        }
        return S_OK;
    }

    private void room(int n) {
        if (gpas.length < n) {
            gpas = new long[n];
            lens = new long[n];
        }
    }
}
