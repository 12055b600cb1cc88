package io.guestmem.access;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * How many read and write system calls (readv, preadv, writev, pwritev included) an action made on this
 * thread, as the kernel's per-thread I/O accounting counts them ({@code syscr}/{@code syscw} of
 * /proc/thread-self/io), less what reading the counters itself costs. Run the action once before measuring
 * it, so that class loading (which reads jars on this thread) is not counted.
 */
final class ThreadSyscalls {
    private ThreadSyscalls() {}

    record Count(long reads, long writes) {}

    interface Action {
        void run() throws Exception;
    }

    static Count of(Action action) throws Exception {
        Path io = Path.of("/proc/thread-self/io");
        assumeTrue(Files.isReadable(io), "no per-thread I/O accounting in this kernel");
        long[] a = read(io), b = read(io); // the probe's own calls, counted between a and b
        action.run();
        long[] c = read(io);
        return new Count(c[0] - b[0] - (b[0] - a[0]), c[1] - b[1] - (b[1] - a[1]));
    }

    private static long[] read(Path io) {
        try {
            long[] v = new long[2];
            for (String line : Files.readAllLines(io)) {
                if (line.startsWith("syscr:")) v[0] = Long.parseLong(line.substring(6).trim());
                if (line.startsWith("syscw:")) v[1] = Long.parseLong(line.substring(6).trim());
            }
            return v;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
