package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import jnr.posix.POSIX;
import jnr.posix.POSIXFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * readv/writev/preadv/pwritev on real pipes, files and memfds: data checked through an independent binding
 * (JNR-POSIX) or the file's own contents, system calls counted by the kernel's per-thread I/O accounting.
 */
class UioTest {
    private static final POSIX ORACLE = POSIXFactory.getNativePOSIX();

    static byte[] random(int n, long seed) {
        byte[] x = new byte[n];
        new Random(seed).nextBytes(x);
        return x;
    }

    /** This thread's {@code syscr} and {@code syscw} from /proc/thread-self/io. */
    static long[] threadIo() throws IOException {
        long[] v = new long[2];
        for (String line : Files.readAllLines(Path.of("/proc/thread-self/io"))) {
            if (line.startsWith("syscr:")) v[0] = Long.parseLong(line.substring(6).trim());
            if (line.startsWith("syscw:")) v[1] = Long.parseLong(line.substring(6).trim());
        }
        return v;
    }

    /** Read and write system calls {@code r} made on this thread, less what reading the counters costs. */
    static long[] syscallsOf(Runnable r) throws IOException {
        assumeTrue(Files.isReadable(Path.of("/proc/thread-self/io")), "no per-thread I/O accounting in this kernel");
        long[] a = threadIo(), b = threadIo(); // the probe's own reads, counted between a and b
        r.run();
        long[] c = threadIo();
        return new long[] {c[0] - b[0] - (b[0] - a[0]), c[1] - b[1] - (b[1] - a[1])};
    }

    @Test
    void iovecIsAPointerThenASizeTAndIovMaxIsWhatGetconfSays() throws Exception {
        assertEquals(ValueLayout.ADDRESS.byteSize() + ValueLayout.JAVA_LONG.byteSize(), Uio.IOVEC.byteSize(), "LP64: no padding");
        assertEquals(0, Uio.BASE_OFFSET);
        assertEquals(ValueLayout.ADDRESS.byteSize(), Uio.LEN_OFFSET);
        Process p = new ProcessBuilder("getconf", "IOV_MAX").redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.US_ASCII).trim();
        assertEquals(0, p.waitFor(), out);
        assertEquals(Integer.parseInt(out), Uio.IOV_MAX);
    }

    @Test
    void readvOnAPipeReturnsWhatWasWrittenAcrossTheEntries() throws Exception {
        byte[] msg = random(16, 1);
        try (FileFd.Pipe pipe = FileFd.pipe(); Arena a = Arena.ofConfined(); IovecArray iov = IovecArray.allocate(3)) {
            assertEquals(16, ORACLE.write(pipe.writeEnd().fd(), msg, 16));
            MemorySegment b0 = a.allocate(3), b1 = a.allocate(5), b2 = a.allocate(100);
            iov.set(0, b0);
            iov.set(1, b1);
            iov.set(2, b2);
            assertEquals(108, iov.totalLength());
            assertEquals(16, Uio.readv(pipe.readEnd().fd(), iov), "a pipe read returns what is there: short of 108");
            assertArrayEquals(Arrays.copyOfRange(msg, 0, 3), b0.toArray(ValueLayout.JAVA_BYTE));
            assertArrayEquals(Arrays.copyOfRange(msg, 3, 8), b1.toArray(ValueLayout.JAVA_BYTE));
            assertArrayEquals(Arrays.copyOfRange(msg, 8, 16), b2.asSlice(0, 8).toArray(ValueLayout.JAVA_BYTE));

            // and the other way: writev gathers, the oracle reads the pipe
            b0.copyFrom(MemorySegment.ofArray(new byte[] {1, 2, 3}));
            b1.copyFrom(MemorySegment.ofArray(new byte[] {4, 5, 6, 7, 8}));
            iov.set(2, b2.asSlice(0, 2));
            b2.set(ValueLayout.JAVA_BYTE, 0, (byte) 9);
            b2.set(ValueLayout.JAVA_BYTE, 1, (byte) 10);
            assertEquals(10, Uio.writev(pipe.writeEnd().fd(), iov));
            byte[] back = new byte[32];
            assertEquals(10, ORACLE.read(pipe.readEnd().fd(), back, 32));
            assertArrayEquals(new byte[] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, Arrays.copyOf(back, 10));
        }
    }

    @Test
    void failuresNameTheErrnoAndTheCall(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("f");
        Files.write(f, new byte[8192]);
        try (FileFd ro = FileFd.open(f.toString(), Posix.O_RDONLY); FileFd wo = FileFd.open(f.toString(), Posix.O_WRONLY);
             FileFd.Pipe pipe = FileFd.pipe(); Arena a = Arena.ofConfined(); IovecArray iov = IovecArray.allocate(3)) {
            for (int i = 0; i < 3; i++) iov.set(i, a.allocate(16));
            UioException e = assertThrows(UioException.class, () -> Uio.pwritev(ro.fd(), iov, 0x1000));
            assertEquals("EBADF", e.errnoName());
            assertEquals(0, e.bytesDone());
            assertEquals("EBADF from pwritev(fd " + ro.fd() + ", 3 iovecs, offset 0x1000)", e.getMessage());
            e = assertThrows(UioException.class, () -> Uio.preadv(wo.fd(), iov, 0x1000));
            assertEquals("EBADF from preadv(fd " + wo.fd() + ", 3 iovecs, offset 0x1000)", e.getMessage());
            e = assertThrows(UioException.class, () -> Uio.readv(wo.fd(), iov));
            assertEquals("EBADF from readv(fd " + wo.fd() + ", 3 iovecs)", e.getMessage());
            e = assertThrows(UioException.class, () -> Uio.preadv(pipe.readEnd().fd(), iov, 0));
            assertEquals(Errno.ESPIPE, e.errnoEnum(), "a pipe has no offsets");
            assertInstanceOf(SyscallException.class, e);
        }
    }

    @Test
    void moreThanIovMaxEntriesAreSplitIntoCallsOfIovMax() throws Exception {
        int n = 2 * Uio.IOV_MAX + 5, len = 16;
        int fd = Memfd.create("guestmem-uio", 0);
        try (Arena a = Arena.ofConfined(); IovecArray iov = IovecArray.allocate(n)) {
            MemorySegment src = a.allocate((long) n * 2 * len);
            src.copyFrom(MemorySegment.ofArray(random(n * 2 * len, 2)));
            for (int i = 0; i < n; i++) iov.set(i, src.asSlice((long) i * 2 * len, len)); // every other 16 bytes
            long[] calls = syscallsOf(() -> assertEquals((long) n * len, Uio.pwritev(fd, iov, 100)));
            assertEquals(3, calls[1], "2 * IOV_MAX + 5 entries: three pwritev calls");
            byte[] file = Files.readAllBytes(Path.of("/proc/self/fd/" + fd));
            assertEquals(100 + n * len, file.length);
            for (int i = 0; i < n; i++) {
                assertArrayEquals(src.asSlice((long) i * 2 * len, len).toArray(ValueLayout.JAVA_BYTE),
                        Arrays.copyOfRange(file, 100 + i * len, 100 + (i + 1) * len), "entry " + i);
            }

            // reading it back from offset 100 + 16: the file ends one entry early, so the last entry stays
            // untouched, and the count is short
            MemorySegment dst = a.allocate((long) n * len);
            dst.fill((byte) 0x5a);
            for (int i = 0; i < n; i++) iov.set(i, dst.asSlice((long) i * len, len));
            long[] reads = syscallsOf(() -> assertEquals((long) (n - 1) * len, Uio.preadv(fd, iov, 100 + len)));
            assertEquals(3, reads[0]);
            assertArrayEquals(Arrays.copyOfRange(file, 100 + len, file.length), dst.asSlice(0, (long) (n - 1) * len).toArray(ValueLayout.JAVA_BYTE));
            byte[] untouched = new byte[len];
            Arrays.fill(untouched, (byte) 0x5a);
            assertArrayEquals(untouched, dst.asSlice((long) (n - 1) * len, len).toArray(ValueLayout.JAVA_BYTE));

            // a short first call ends the request: 10 entries' worth left in the file, one call, nothing after
            dst.fill((byte) 0x5a);
            long[] one = syscallsOf(() -> assertEquals(10L * len, Uio.preadv(fd, iov, file.length - 10L * len)));
            assertEquals(1, one[0], "no second call after a short one");
            assertArrayEquals(Arrays.copyOfRange(file, file.length - 10 * len, file.length), dst.asSlice(0, 10L * len).toArray(ValueLayout.JAVA_BYTE));
            assertEquals(0x5a, dst.get(ValueLayout.JAVA_BYTE, 10L * len));
        } finally {
            Posix.close(fd);
        }
    }

    @Test
    void aLaterCallFailingSaysWhatTheEarlierOnesMoved() throws Exception {
        int n = Uio.IOV_MAX + 3;
        int fd = Memfd.create("guestmem-uio", 0);
        try (Arena a = Arena.ofConfined(); IovecArray iov = IovecArray.allocate(n)) {
            MemorySegment src = a.allocate((long) n * 8);
            for (int i = 0; i < n; i++) iov.set(i, src.asSlice(i * 8L, 8));
            iov.set(Uio.IOV_MAX, 8, 8); // the first entry of the second call: an address nothing is mapped at
            UioException e = assertThrows(UioException.class, () -> Uio.pwritev(fd, iov, 0));
            assertEquals(Errno.EFAULT, e.errnoEnum());
            assertEquals(Uio.IOV_MAX * 8L, e.bytesDone());
            assertEquals("EFAULT from pwritev(fd " + fd + ", 3 iovecs, offset " + Fmt.hex(Uio.IOV_MAX * 8L) + "): iovecs "
                    + Uio.IOV_MAX + ".." + (n - 1) + " of " + n + ", " + Uio.IOV_MAX * 8L + " bytes moved before", e.getMessage());
            assertEquals(Uio.IOV_MAX * 8L, Files.size(Path.of("/proc/self/fd/" + fd)), "the first call's bytes did land");
        } finally {
            Posix.close(fd);
        }
    }

    @Test
    void useAfterCloseIsAnIllegalStateException() {
        IovecArray iov = IovecArray.allocate(1);
        iov.close();
        iov.close();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Uio.writev(1, iov));
        assertEquals("iovec array of 1 is closed: writev", e.getMessage());
        FileFd.Pipe pipe = FileFd.pipe();
        pipe.close();
        e = assertThrows(IllegalStateException.class, () -> pipe.readEnd().fd());
        assertTrue(e.getMessage().endsWith("(pipe read end) is closed: fd()"), e.getMessage());
        try (Arena a = Arena.ofConfined(); IovecArray live = IovecArray.allocate(1)) {
            MemorySegment dead;
            try (Arena b = Arena.ofConfined()) {
                dead = b.allocate(8);
            }
            assertThrows(IllegalStateException.class, () -> live.set(0, dead), "no iovec over memory already freed");
            assertThrows(IllegalArgumentException.class, () -> live.set(0, MemorySegment.ofArray(new byte[8])));
        }
    }
}
