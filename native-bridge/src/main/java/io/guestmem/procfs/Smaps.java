package io.guestmem.procfs;

import java.io.BufferedReader;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * {@code /proc/<pid>/smaps}: per-VMA page sizes, counters and VmFlags.
 *
 * <p>smaps costs a page-table walk per VMA, done by the kernel as the file is read; the lookups here read
 * it as a stream and stop after the VMA they need, so the kernel never walks the VMAs above it. Parsing is
 * plain scanning, no regex.
 */
public final class Smaps {
    private Smaps() {}

    /** All VMAs of this process. */
    public static List<Vma> self() {
        return read(0);
    }

    /** All VMAs of {@code pid} (0 = self). */
    public static List<Vma> read(int pid) {
        return scan(pid, 0, -1L, Integer.MAX_VALUE);
    }

    /** The VMA of this process containing {@code address}, or null when no VMA contains it. */
    public static Vma vmaOf(long address) {
        return vmaOf(0, address);
    }

    /** The VMA of {@code pid} (0 = self) containing {@code address}, or null. */
    public static Vma vmaOf(int pid, long address) {
        List<Vma> l = scan(pid, address, address + 1, 1);
        return l.isEmpty() || !l.get(0).contains(address) ? null : l.get(0);
    }

    /** The VMAs of {@code pid} (0 = self) overlapping {@code [start, end)}. */
    public static List<Vma> overlapping(int pid, long start, long end) {
        return scan(pid, start, end, Integer.MAX_VALUE);
    }

    /** Reads the VMAs overlapping [start, end) (unsigned), at most {@code limit}, stopping once past end. */
    private static List<Vma> scan(int pid, long start, long end, int limit) {
        ProcText.checkPid(pid);
        List<Vma> out = new ArrayList<>();
        try (BufferedReader r = ProcText.open(pid, "smaps")) {
            Block b = null;
            for (String line; (line = r.readLine()) != null; ) {
                MapsEntry header = Character.isUpperCase(line.isEmpty() ? 'X' : line.charAt(0)) ? null : MapsEntry.parse(line);
                if (header != null) {
                    if (b != null && b.wanted) {
                        out.add(b.build());
                        if (out.size() >= limit) return out;
                    }
                    if (Long.compareUnsigned(header.start(), end) >= 0) return out;
                    b = new Block(header, Long.compareUnsigned(header.end(), start) > 0);
                } else if (b != null && b.wanted) {
                    b.line(line);
                }
            }
            if (b != null && b.wanted && out.size() < limit) out.add(b.build());
        } catch (IOException e) {
            throw ProcText.translate(pid, "smaps", ProcText.dir(pid) + "/smaps", e);
        }
        return out;
    }

    /** One smaps block being parsed. */
    private static final class Block {
        final MapsEntry header;
        final boolean wanted;
        final Map<String, Long> fields = new LinkedHashMap<>();
        final EnumSet<VmFlag> flags = EnumSet.noneOf(VmFlag.class);
        final List<String> codes = new ArrayList<>();
        boolean thpEligible;

        Block(MapsEntry header, boolean wanted) {
            this.header = header;
            this.wanted = wanted;
        }

        void line(String line) {
            int colon = line.indexOf(':');
            if (colon <= 0) return;
            String key = line.substring(0, colon);
            if (key.equals("VmFlags")) {
                for (String code : line.substring(colon + 1).trim().split(" +")) {
                    if (code.isEmpty()) continue;
                    codes.add(code);
                    VmFlag f = VmFlag.ofCode(code);
                    if (f != null) flags.add(f);
                }
                return;
            }
            int i = colon + 1, n = line.length();
            while (i < n && line.charAt(i) == ' ') i++;
            int s = i;
            while (i < n && line.charAt(i) >= '0' && line.charAt(i) <= '9') i++;
            if (i == s) return;
            long v = Long.parseLong(line, s, i, 10);
            if (key.equals("THPeligible")) {
                thpEligible = v != 0;
                return;
            }
            boolean kb = line.indexOf("kB", i) >= 0;
            fields.put(key, kb ? v * 1024 : v);
        }

        Vma build() {
            return new Vma(header, Collections.unmodifiableMap(fields), thpEligible, Collections.unmodifiableSet(flags),
                    List.copyOf(codes));
        }
    }
}
