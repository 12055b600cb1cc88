package io.guestmem.vhost.blk;

import io.guestmem.access.GuestBuffers;
import io.guestmem.access.GuestMemory;
import io.guestmem.sys.Errno;
import io.guestmem.sys.FileFd;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;

/**
 * A raw disk image file: its size, and the five things virtio-blk does to it. Reads and writes go straight
 * between the file and guest buffers (preadv/pwritev over the buffers' host segments, no copy in between);
 * discard punches a hole, write-zeroes asks the file system for a zeroed range ({@code FALLOC_FL_ZERO_RANGE},
 * or a hole when the driver allows unmapping) and writes zeros itself where the file system has neither.
 */
public final class RawImage implements AutoCloseable {
    /** linux/falloc.h */
    private static final int FALLOC_FL_ZERO_RANGE = 0x10;
    private static final int ZERO_CHUNK = 1 << 20;

    private final FileFd file;
    private final long size;
    private final String path;

    private RawImage(FileFd file, long size, String path) {
        this.file = file;
        this.size = size;
        this.path = path;
    }

    /** Opens an existing image read-write; its size is what the guest sees (whole 512-byte sectors of it). */
    public static RawImage open(String path) {
        FileFd f = FileFd.open(path, Posix.O_RDWR);
        try {
            return new RawImage(f, Posix.lseek(f.fd(), 0, Posix.SEEK_END), path);
        } catch (RuntimeException e) {
            f.close();
            throw e;
        }
    }

    public long size() {
        return size;
    }

    public String path() {
        return path;
    }

    /** Whether {@code [offset, offset + len)} lies in the image. */
    public boolean contains(long offset, long len) {
        return offset >= 0 && len >= 0 && offset <= size && len <= size - offset;
    }

    /** Reads the image at {@code offset} into {@code bufs} (checked writable), all of it. */
    public void read(GuestMemory mem, long offset, GuestBuffers bufs) {
        long n = mem.preadv(file.fd(), offset, bufs);
        if (n != bufs.totalLength())
            throw new SyscallException(Errno.EIO.number, "preadv(" + path + ")", n + " of " + bufs.totalLength() + " bytes");
    }

    /** Writes {@code bufs} into the image at {@code offset}, all of it. */
    public void write(GuestMemory mem, long offset, GuestBuffers bufs) {
        long n = mem.pwritev(file.fd(), offset, bufs);
        if (n != bufs.totalLength())
            throw new SyscallException(Errno.EIO.number, "pwritev(" + path + ")", n + " of " + bufs.totalLength() + " bytes");
    }

    public void flush() {
        Posix.fdatasync(file.fd());
    }

    /** Frees the range: later reads give zeros. */
    public void discard(long offset, long len) {
        Memfd.punchHole(file.fd(), offset, len);
    }

    /** Zeros the range; {@code unmap} lets it be a hole. */
    public void writeZeroes(long offset, long len, boolean unmap) {
        try {
            if (unmap) Memfd.punchHole(file.fd(), offset, len);
            else Memfd.fallocate(file.fd(), FALLOC_FL_ZERO_RANGE | Memfd.FALLOC_FL_KEEP_SIZE, offset, len);
        } catch (SyscallException e) {
            if (!e.is(Errno.EOPNOTSUPP)) throw e;
            writeZerosByHand(offset, len);
        }
    }

    private void writeZerosByHand(long offset, long len) {
        try (var arena = java.lang.foreign.Arena.ofConfined()) {
            var zeros = arena.allocate(ZERO_CHUNK);
            for (long done = 0; done < len; ) {
                long n = Posix.pwrite(file.fd(), zeros, Math.min(ZERO_CHUNK, len - done), offset + done);
                if (n <= 0) throw new SyscallException(Errno.EIO.number, "pwrite(" + path + ")", "wrote nothing");
                done += n;
            }
        }
    }

    @Override
    public void close() {
        file.close();
    }

    @Override
    public String toString() {
        return "raw image " + path + " (" + size + " bytes)";
    }
}
