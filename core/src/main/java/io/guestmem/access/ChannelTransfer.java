package io.guestmem.access;

import io.guestmem.access.ChunkWalk.Mode;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.ReadableByteChannel;
import java.nio.channels.ScatteringByteChannel;
import java.nio.channels.WritableByteChannel;
import java.util.Arrays;

/**
 * One transfer between a channel and a gpa range of {@link GuestMemory}: the range as direct buffers over the
 * slots' views (one per chunk of the {@link ChunkWalk}, at most 1 GiB each, since a ByteBuffer holds at most
 * 2 GiB - 1), and the channel calls on them in one of three shapes:
 * <ul>
 *   <li><b>once</b> ({@code readFrom}/{@code writeTo}): exactly one channel call, a scattering or gathering
 *       one over every buffer when the range has several and the channel can (one readv/writev), else one on
 *       the first buffer. A datagram, a tap frame or a pipe's current contents arrive as they were sent:
 *       nothing waits for more to fill the range.</li>
 *   <li><b>fully</b> ({@code readFullyFrom}/{@code writeFullyTo}): calls until the range is done, end of
 *       stream, or a call moves nothing (a non-blocking channel with nothing more now).</li>
 *   <li><b>at</b> (the positional FileChannel variants): pread/pwrite per buffer until the range is done or
 *       end of file, a block device's request; the channel's position is not used.</li>
 * </ul>
 * What landed in guest memory is measured by the buffers' positions, not the calls' return values, and
 * marked dirty in a {@code finally}: a channel that stores some bytes and then throws still has those pages
 * reported to live migration before its exception propagates.
 *
 * <p>The caller checked the range and holds its slots (see {@link LayoutGate}) for the whole transfer.
 */
final class ChannelTransfer {
    /** At most this per buffer. */
    static final int MAX_IO_CHUNK = 1 << 30;

    private final SlotTable table;
    private ByteBuffer[] buffers = new ByteBuffer[2];
    private int[] slot = new int[2];     // slot index in table of buffer k
    private long[] offset = new long[2]; // offset in that slot of buffer k's first byte
    private int n;

    private ChannelTransfer(SlotTable table) {
        this.table = table;
    }

    /** The buffers of {@code [gpa, gpa + len)} of {@code t}, {@code len > 0}, a range the caller checked and holds. */
    static ChannelTransfer over(SlotTable t, PageAccessPolicy policy, long gpa, long len, String op) {
        ChannelTransfer x = new ChannelTransfer(t);
        // READ: the walk only cuts the range into chunks here; the caller's check already refused what the
        // transfer's direction may not touch.
        ChunkWalk.walk(t, policy, gpa, len, Mode.READ, op, x, ChannelTransfer::add);
        return x;
    }

    private static long add(ChannelTransfer x, int slot, MemorySegment view, long o, long len, long done) {
        for (long k = 0; k < len; k += MAX_IO_CHUNK) {
            long m = Math.min(len - k, MAX_IO_CHUNK);
            if (x.n == x.buffers.length) {
                x.buffers = Arrays.copyOf(x.buffers, 2 * x.n);
                x.slot = Arrays.copyOf(x.slot, 2 * x.n);
                x.offset = Arrays.copyOf(x.offset, 2 * x.n);
            }
            x.buffers[x.n] = view.asSlice(o + k, m).asByteBuffer();
            x.slot[x.n] = slot;
            x.offset[x.n] = o + k;
            x.n++;
        }
        return len;
    }

    /** Bytes moved so far (every buffer started at position 0). */
    long moved() {
        long m = 0;
        for (int k = 0; k < n; k++) m += buffers[k].position();
        return m;
    }

    // ------------------------------------------------------------------ into guest memory

    long readOnce(ReadableByteChannel ch) throws IOException {
        try {
            long r = n > 1 && ch instanceof ScatteringByteChannel s ? s.read(buffers, 0, n) : ch.read(buffers[0]);
            return result(r < 0);
        } finally {
            markStored();
        }
    }

    long readFully(ReadableByteChannel ch) throws IOException {
        try {
            ScatteringByteChannel s = n > 1 && ch instanceof ScatteringByteChannel sc ? sc : null;
            int k = 0;
            while (k < n) {
                long r = s != null ? s.read(buffers, k, n - k) : ch.read(buffers[k]);
                if (r < 0) return result(true);
                while (k < n && !buffers[k].hasRemaining()) k++;
                if (r == 0) break; // a non-blocking channel with nothing more now
            }
            return result(false);
        } finally {
            markStored();
        }
    }

    long readAt(FileChannel ch, long position) throws IOException {
        try {
            long done = 0;
            for (int k = 0; k < n; k++) {
                ByteBuffer b = buffers[k];
                while (b.hasRemaining()) {
                    int r = ch.read(b, position + done);
                    if (r < 0) return result(true);
                    if (r == 0) return result(false);
                    done += r;
                }
            }
            return result(false);
        } finally {
            markStored();
        }
    }

    /** The pages the transfer stored into, in the VMM's dirty log (also when the channel threw). */
    private void markStored() {
        for (int k = 0; k < n; k++) {
            int p = buffers[k].position();
            if (p > 0) table.markWritten(slot[k], offset[k], p);
        }
    }

    // ------------------------------------------------------------------ out of guest memory

    long writeOnce(WritableByteChannel ch) throws IOException {
        if (n > 1 && ch instanceof GatheringByteChannel g) g.write(buffers, 0, n);
        else ch.write(buffers[0]);
        return moved();
    }

    long writeFully(WritableByteChannel ch) throws IOException {
        GatheringByteChannel g = n > 1 && ch instanceof GatheringByteChannel gc ? gc : null;
        int k = 0;
        while (k < n) {
            long r = g != null ? g.write(buffers, k, n - k) : ch.write(buffers[k]);
            while (k < n && !buffers[k].hasRemaining()) k++;
            if (r <= 0) break; // a non-blocking channel that takes no more now
        }
        return moved();
    }

    long writeAt(FileChannel ch, long position) throws IOException {
        long done = 0;
        for (int k = 0; k < n; k++) {
            ByteBuffer b = buffers[k];
            while (b.hasRemaining()) {
                int r = ch.write(b, position + done);
                if (r <= 0) return moved();
                done += r;
            }
        }
        return moved();
    }

    /** The bytes moved, or -1 when the stream ended before any. */
    private long result(boolean endOfStream) {
        long m = moved();
        return endOfStream && m == 0 ? -1 : m;
    }
}
