package io.guestmem.host;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.guestmem.sys.Capabilities;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Posix;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The vhost-user case: another process maps a shareable region's fd (through /proc/PID/fd/N) and sees
 * the bytes this process wrote, and this process sees the child's writes.
 */
class SharingTest {
    static final long MiB = 1 << 20;

    /** A child JVM (single-file source launch) that maps the file MAP_SHARED, prints a u64, writes another. */
    private static final String CHILD = """
            import java.nio.*; import java.nio.channels.FileChannel; import java.nio.file.*;
            public class ChildMap {
                public static void main(String[] a) throws Exception {
                    try (FileChannel ch = FileChannel.open(Path.of(a[0]), StandardOpenOption.READ, StandardOpenOption.WRITE)) {
                        MappedByteBuffer m = ch.map(FileChannel.MapMode.READ_WRITE, Long.parseLong(a[1]), Long.parseLong(a[2]));
                        m.order(ByteOrder.LITTLE_ENDIAN);
                        System.out.println(Long.toHexString(m.getLong(0)));
                        m.putLong(8, Long.parseUnsignedLong(a[3], 16));
                    }
                }
            }
            """;

    private static String runChild(Path dir, int fd, long offset, long len, long value) throws IOException, InterruptedException {
        Path src = dir.resolve("ChildMap.java");
        Files.writeString(src, CHILD);
        String java = ProcessHandle.current().info().command().orElse(System.getProperty("java.home") + "/bin/java");
        Process p = new ProcessBuilder(java, src.toString(), "/proc/" + Posix.getpid() + "/fd/" + fd,
                Long.toString(offset), Long.toString(len), Long.toHexString(value))
                .redirectErrorStream(true).start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "child finished");
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertEquals(0, p.exitValue(), out);
        return out;
    }

    @Test
    void childMapsMemfdAndSeesOurBytesAndWeSeeItsBytes(@TempDir Path dir) throws Exception {
        try (HostRegion r = HostRegion.memfd(4 * MiB).create()) {
            int fd = r.fd().orElseThrow();
            r.segment().set(ValueLayout.JAVA_LONG, 0, 0x1122334455667788L);
            assertEquals("1122334455667788", runChild(dir, fd, r.fdOffset(), r.size(), 0xcafef00dL));
            assertEquals(0xcafef00dL, r.segment().get(ValueLayout.JAVA_LONG, 8));
        }
    }

    @Test
    void childMapsHugetlbMemfd(@TempDir Path dir) throws Exception {
        assumeTrue(HugePagePools.sizes().stream().anyMatch(s -> s.bytes() == 2 * MiB), "no 2M hugetlb pool");
        assumeTrue(Capabilities.has(Capabilities.CAP_SYS_ADMIN), "raising the pool needs root");
        HugePageSize twoM = HugePagePools.size(2 * MiB);
        try (HugePagePools.Reservation res = HugePagePools.raise(twoM, 1);
             HostRegion r = HostRegion.memfdHugetlb(2 * MiB, twoM).create()) {
            r.segment().set(ValueLayout.JAVA_LONG, 0, 0xabcdefL);
            assertEquals("abcdef", runChild(dir, r.fd().orElseThrow(), 0, r.size(), 0x42L));
            assertEquals(0x42L, r.segment().get(ValueLayout.JAVA_LONG, 8));
        }
    }

    @Test
    void callerFdRegionMapsAtItsOffsetAndLeavesTheFdOpen() {
        int fd = Memfd.create("gm-caller", 0);
        try {
            Memfd.ftruncate(fd, 4 * MiB);
            try (HostRegion a = HostRegion.ofFd(fd, 0, 4 * MiB, Backing.FD).create();
                 HostRegion b = HostRegion.ofFd(fd, 2 * MiB, 2 * MiB, Backing.FD).create()) {
                assertEquals(fd, b.fd().orElseThrow());
                assertEquals(2 * MiB, b.fdOffset());
                a.segment().set(ValueLayout.JAVA_LONG, 2 * MiB + 16, 0x77L);
                assertEquals(0x77L, b.segment().get(ValueLayout.JAVA_LONG, 16), "same file pages through both mappings");
            }
            assertEquals(1, Leaks.memfdsNamed("gm-caller"), "the caller's fd stays open");
        } finally {
            Posix.close(fd);
        }
    }
}
