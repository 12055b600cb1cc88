package io.guestmem.host;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Test-only plain-text reads of /proc/self/{maps,status,smaps,numa_maps}: the kernel's own view that
 * the tests check against. (The library's real readers live in io.guestmem.procfs.)
 */
public final class ProcText {
    private ProcText() {}

    private static final java.util.regex.Pattern HEADER = java.util.regex.Pattern.compile("[0-9a-f]+-[0-9a-f]+ ");

    /** One line of /proc/self/maps. */
    public record MapLine(long start, long end, String perms, String path) {
        boolean overlaps(long s, long e) {
            return start < e && s < end;
        }
    }

    public static List<MapLine> maps() {
        List<MapLine> out = new ArrayList<>();
        for (String l : lines("/proc/self/maps")) {
            String[] f = l.trim().split("\\s+", 6);
            String[] r = f[0].split("-");
            out.add(new MapLine(Long.parseUnsignedLong(r[0], 16), Long.parseUnsignedLong(r[1], 16), f[1],
                    f.length > 5 ? f[5] : ""));
        }
        return out;
    }

    /** The mappings that overlap {@code [start, end)}. */
    public static List<MapLine> overlapping(long start, long end) {
        return maps().stream().filter(m -> m.overlaps(start, end)).toList();
    }

    /** The mapping that contains {@code addr}, or null. */
    public static MapLine mapOf(long addr) {
        return maps().stream().filter(m -> m.start <= addr && addr < m.end).findFirst().orElse(null);
    }

    /** A "kB" field of /proc/self/status, e.g. VmLck. */
    public static long statusKb(String key) {
        for (String l : lines("/proc/self/status"))
            if (l.startsWith(key + ":")) return Long.parseLong(l.substring(key.length() + 1).trim().split("\\s+")[0]);
        throw new IllegalStateException(key + " not in /proc/self/status");
    }

    /** The smaps block of the VMA containing {@code addr} (header line first). */
    public static List<String> smapsOf(long addr) {
        List<String> all = lines("/proc/self/smaps");
        List<String> block = null;
        for (String l : all) {
            if (HEADER.matcher(l).lookingAt()) {
                if (block != null) return block;
                String[] r = l.split("\\s+")[0].split("-");
                long s = Long.parseUnsignedLong(r[0], 16), e = Long.parseUnsignedLong(r[1], 16);
                if (s <= addr && addr < e) block = new ArrayList<>();
            }
            if (block != null) block.add(l);
        }
        if (block != null) return block;
        throw new IllegalStateException("no VMA at 0x" + Long.toHexString(addr));
    }

    public static Set<String> vmFlags(long addr) {
        for (String l : smapsOf(addr))
            if (l.startsWith("VmFlags:")) return new HashSet<>(Arrays.asList(l.substring(8).trim().split("\\s+")));
        throw new IllegalStateException("no VmFlags");
    }

    /** A "kB" field (Rss, KernelPageSize, Locked ...) of the VMA containing {@code addr}. */
    public static long smapsKb(long addr, String key) {
        for (String l : smapsOf(addr))
            if (l.startsWith(key + ":")) return Long.parseLong(l.substring(key.length() + 1).trim().split("\\s+")[0]);
        throw new IllegalStateException(key + " not in smaps");
    }

    /** The /proc/self/numa_maps line of the VMA starting at {@code start}, or null. */
    public static String numaMapsOf(long start) {
        String prefix = Long.toHexString(start) + " ";
        return lines("/proc/self/numa_maps").stream().filter(l -> l.startsWith(prefix)).findFirst().orElse(null);
    }

    private static List<String> lines(String path) {
        try {
            return Files.readAllLines(Path.of(path));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
