package io.guestmem.procfs;

import java.io.BufferedReader;
import java.io.IOException;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A snapshot of {@code /proc/<pid>/status}: memory counters (VmLck, VmPin, VmRSS ... in bytes) and the
 * capability sets (CapEff ...). Read once per call; the values are the kernel's at that moment.
 *
 * @param pid    the pid read (0 = self)
 * @param fields every line as printed, by name
 */
public record ProcStatus(int pid, Map<String, String> fields) {
    public static final int CAP_IPC_LOCK = 14, CAP_SYS_ADMIN = 21;

    public static ProcStatus self() {
        return read(0);
    }

    public static ProcStatus read(int pid) {
        ProcText.checkPid(pid);
        Map<String, String> m = new LinkedHashMap<>();
        try (BufferedReader r = ProcText.open(pid, "status")) {
            for (String line; (line = r.readLine()) != null; ) {
                int colon = line.indexOf(':');
                if (colon > 0) m.put(line.substring(0, colon), line.substring(colon + 1).trim());
            }
        } catch (IOException e) {
            throw ProcText.translate(pid, "status", ProcText.dir(pid) + "/status", e);
        }
        return new ProcStatus(pid, Collections.unmodifiableMap(m));
    }

    /** A {@code Vm*} / {@code Rss*} / {@code HugetlbPages} counter in bytes; -1 when the line is absent. */
    public long bytes(String name) {
        String v = fields.get(name);
        if (v == null) return -1;
        int sp = v.indexOf(' ');
        long n = Long.parseLong(sp < 0 ? v : v.substring(0, sp));
        return v.endsWith("kB") ? n * 1024 : n;
    }

    /** Locked memory (mlock, VM_LOCKED VMAs). */
    public long vmLck() {
        return bytes("VmLck");
    }

    /** Pinned memory (pin_user_pages long-term pins: RDMA, io_uring fixed buffers, ...). */
    public long vmPin() {
        return bytes("VmPin");
    }

    public long vmRss() {
        return bytes("VmRSS");
    }

    public long vmHwm() {
        return bytes("VmHWM");
    }

    public long vmSize() {
        return bytes("VmSize");
    }

    public long rssAnon() {
        return bytes("RssAnon");
    }

    public long hugetlbPages() {
        return bytes("HugetlbPages");
    }

    /** A capability set as a bit mask: "CapEff", "CapPrm", "CapInh", "CapBnd", "CapAmb". */
    public long capabilities(String set) {
        String v = fields.get(set);
        if (v == null) throw new ProcfsException("/proc status has no " + set + " line");
        return Long.parseUnsignedLong(v, 16);
    }

    public long capEff() {
        return capabilities("CapEff");
    }

    /** Whether {@code cap} (e.g. {@link #CAP_SYS_ADMIN}) is in the effective set. */
    public boolean hasEffective(int cap) {
        return (capEff() >>> cap & 1) != 0;
    }

    /** The real uid (first of the Uid line). */
    public int uid() {
        String v = fields.get("Uid");
        return Integer.parseInt(v.split("\\s+")[0]);
    }
}
