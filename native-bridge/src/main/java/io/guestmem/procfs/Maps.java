package io.guestmem.procfs;

import java.io.BufferedReader;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/** {@code /proc/<pid>/maps}: the VMAs of a process, cheap (no page-table walk, unlike smaps). */
public final class Maps {
    private Maps() {}

    /** This process's mappings. */
    public static List<MapsEntry> self() {
        return read(0);
    }

    /** The mappings of {@code pid} (0 = self). */
    public static List<MapsEntry> read(int pid) {
        ProcText.checkPid(pid);
        List<MapsEntry> out = new ArrayList<>();
        try (BufferedReader r = ProcText.open(pid, "maps")) {
            for (String line; (line = r.readLine()) != null; ) {
                MapsEntry e = MapsEntry.parse(line);
                if (e == null) throw new ProcfsException("unexpected maps line: " + line);
                out.add(e);
            }
        } catch (IOException e) {
            throw ProcText.translate(pid, "maps", ProcText.dir(pid) + "/maps", e);
        }
        return out;
    }

    /** The mapping of {@code pid} that contains {@code address}, or null. Stops reading once past it. */
    public static MapsEntry find(int pid, long address) {
        ProcText.checkPid(pid);
        try (BufferedReader r = ProcText.open(pid, "maps")) {
            for (String line; (line = r.readLine()) != null; ) {
                MapsEntry e = MapsEntry.parse(line);
                if (e == null) throw new ProcfsException("unexpected maps line: " + line);
                if (e.contains(address)) return e;
                if (Long.compareUnsigned(e.start(), address) > 0) return null;
            }
        } catch (IOException e) {
            throw ProcText.translate(pid, "maps", ProcText.dir(pid) + "/maps", e);
        }
        return null;
    }

    /** The mappings of {@code pid} that overlap {@code [start, end)}. */
    public static List<MapsEntry> overlapping(int pid, long start, long end) {
        List<MapsEntry> out = new ArrayList<>();
        for (MapsEntry e : read(pid))
            if (Long.compareUnsigned(e.end(), start) > 0 && Long.compareUnsigned(e.start(), end) < 0) out.add(e);
        return out;
    }
}
