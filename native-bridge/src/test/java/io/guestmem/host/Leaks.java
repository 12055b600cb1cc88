package io.guestmem.host;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;

/** Test helpers that prove nothing was left behind, from /proc/self/maps and /proc/self/fd. */
final class Leaks {
    private Leaks() {}

    /** Nothing is mapped anywhere in the span a region (with its guards) occupied. */
    static void assertNothingMapped(long start, long end) {
        List<ProcText.MapLine> left = ProcText.overlapping(start, end);
        assertTrue(left.isEmpty(), "still mapped in [0x" + Long.toHexString(start) + ", 0x" + Long.toHexString(end) + "): " + left);
    }

    record Range(long start, long end) {}

    /** The address ranges mapped now. */
    static Set<Range> snapshot() {
        Set<Range> s = new HashSet<>();
        for (ProcText.MapLine m : ProcText.maps()) s.add(new Range(m.start(), m.end()));
        return s;
    }

    /**
     * No mapping of a length in {@code [minSize, maxSize]} appeared since {@code before} in address space
     * that was unmapped then. The JVM itself resizes its heap and malloc arenas inside ranges it already
     * held (excluded by the overlap test) and maps small thread stacks (excluded by size); what a failed
     * region would leave is a fresh range about its own size.
     */
    static void assertNoNewMappingSized(Set<Range> before, long minSize, long maxSize) {
        List<ProcText.MapLine> fresh = ProcText.maps().stream()
                .filter(m -> m.end() - m.start() >= minSize && m.end() - m.start() <= maxSize)
                .filter(m -> before.stream().noneMatch(b -> b.start() < m.end() && m.start() < b.end()))
                .toList();
        assertTrue(fresh.isEmpty(), "new mappings left behind: " + fresh);
    }

    /** How many of this process's fds point at memfd:{@code name}. */
    static long memfdsNamed(String name) {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.filter(p -> {
                try {
                    return Files.readSymbolicLink(p).toString().startsWith("/memfd:" + name + " ");
                } catch (IOException e) {
                    return false; // the fd of the listing itself, already closed
                }
            }).count();
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
    }

    static void assertNoMemfd(String name) {
        assertEquals(0, memfdsNamed(name), "memfd " + name + " still open");
    }
}
