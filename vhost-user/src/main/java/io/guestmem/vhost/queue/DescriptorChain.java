package io.guestmem.vhost.queue;

import io.guestmem.access.GuestMemory;

/**
 * One request's descriptor chain, walked: its buffers in order, the device-readable ones first, then the
 * device-writable ones, as guest physical ranges not yet touched (the device checks them when it builds its
 * {@link io.guestmem.access.GuestBuffers}). Reused from request to request by its queue (no allocation per
 * request). When the walk stopped at a malformed descriptor, {@link #error()} says why and the buffers are
 * those before it.
 */
public final class DescriptorChain {
    private final long[] addr;
    private final long[] len;
    private int head = -1, count, readable;
    private long readableBytes, writableBytes;
    private ChainError error;

    DescriptorChain(int capacity) {
        addr = new long[capacity];
        len = new long[capacity];
    }

    void reset(int head) {
        this.head = head;
        count = readable = 0;
        readableBytes = writableBytes = 0;
        error = null;
    }

    void fail(ChainError e) {
        error = e;
    }

    /** Adds a buffer; false (and the chain failed) when it breaks the order or the 32-bit totals. */
    boolean add(long gpa, long length, boolean writable) {
        if (length != 0 && Long.compareUnsigned(gpa + length, gpa) < 0) return failed(ChainError.LENGTH_OVERFLOW);
        if (!writable && count > readable) return failed(ChainError.READABLE_AFTER_WRITABLE);
        if (count == addr.length) return failed(ChainError.TOO_LONG);
        if (writable) writableBytes += length;
        else readableBytes += length;
        if (readableBytes > 0xffff_ffffL || writableBytes > 0xffff_ffffL) return failed(ChainError.LENGTH_OVERFLOW);
        addr[count] = gpa;
        len[count] = length;
        count++;
        if (!writable) readable++;
        return true;
    }

    private boolean failed(ChainError e) {
        error = e;
        return false;
    }

    public int head() {
        return head;
    }

    /** Null for a chain walked to its end. */
    public ChainError error() {
        return error;
    }

    public boolean ok() {
        return error == null;
    }

    public int buffers() {
        return count;
    }

    public long readableBytes() {
        return readableBytes;
    }

    public long writableBytes() {
        return writableBytes;
    }

    /** The gpa of the last byte of the last device-writable buffer (virtio-blk's status byte), -1 with none. */
    public long lastWritableByte() {
        for (int i = count - 1; i >= readable; i--) if (len[i] > 0) return addr[i] + len[i] - 1;
        return -1;
    }

    /**
     * Puts the guest ranges of {@code [skip, skip + length)} of the readable (or writable) part into
     * {@code gpas}/{@code lens} (room for {@link #buffers()} entries) and returns how many; the range must
     * lie in the part.
     */
    public int range(boolean writable, long skip, long length, long[] gpas, long[] lens) {
        int from = writable ? readable : 0, to = writable ? count : readable;
        long total = writable ? writableBytes : readableBytes;
        if (skip < 0 || length < 0 || skip > total || length > total - skip)
            throw new IllegalArgumentException(skip + "+" + length + " of a " + total + "-byte part");
        int n = 0;
        for (int i = from; i < to && length > 0; i++) {
            if (skip >= len[i]) {
                skip -= len[i];
                continue;
            }
            long take = Math.min(len[i] - skip, length);
            gpas[n] = addr[i] + skip;
            lens[n++] = take;
            length -= take;
            skip = 0;
        }
        return n;
    }

    /** Copies {@code dst.length} bytes of the readable part from {@code offset} (a request header). */
    public void readReadable(GuestMemory mem, long offset, byte[] dst) {
        copy(mem, false, offset, dst, dst.length);
    }

    /** Copies {@code length} bytes of the readable part from {@code offset} into {@code dst}. */
    public void readReadable(GuestMemory mem, long offset, byte[] dst, int length) {
        copy(mem, false, offset, dst, length);
    }

    /** Writes {@code src} into the writable part from {@code offset}. */
    public void writeWritable(GuestMemory mem, long offset, byte[] src, int length) {
        copy(mem, true, offset, src, length);
    }

    /** Bytes between {@code b} and {@code [skip, skip + length)} of a part, buffer by buffer (no allocation). */
    private void copy(GuestMemory mem, boolean writable, long skip, byte[] b, int length) {
        int from = writable ? readable : 0, to = writable ? count : readable;
        long total = writable ? writableBytes : readableBytes;
        if (skip < 0 || length < 0 || length > b.length || skip > total || length > total - skip)
            throw new IllegalArgumentException(skip + "+" + length + " of a " + total + "-byte part");
        int at = 0;
        for (int i = from; i < to && at < length; i++) {
            if (skip >= len[i]) {
                skip -= len[i];
                continue;
            }
            int take = (int) Math.min(len[i] - skip, length - at);
            if (writable) mem.write(addr[i] + skip, b, at, take);
            else mem.read(addr[i] + skip, b, at, take);
            at += take;
            skip = 0;
        }
    }

    @Override
    public String toString() {
        return "chain head " + head + ": " + count + " buffers, " + readableBytes + " bytes readable, " + writableBytes
                + " writable" + (error != null ? ", " + error : "");
    }
}
