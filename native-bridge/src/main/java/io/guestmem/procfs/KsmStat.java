package io.guestmem.procfs;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalLong;

/**
 * {@code /proc/<pid>/ksm_stat} (Linux 6.1+): how many of a process's pages KSM has merged. It is the way to
 * tell whether {@link KPageFlag#KSM} in {@code /proc/kpageflags} can be real: Linux 6.12's
 * {@code stable_page_flags()} tests {@code mapping & PAGE_MAPPING_KSM} (two bits, either set) and so reports
 * KPF_KSM on every anonymous page; a process with no merged pages has no KSM page.
 */
public final class KsmStat {
    private KsmStat() {}

    /**
     * {@code ksm_merging_pages + ksm_zero_pages} of {@code pid} (0 = self): pages of it that KSM merged, or
     * empty where the kernel has no ksm_stat (before 6.1, or CONFIG_KSM off: then no page is KSM either
     * way, and callers decide from the kpageflags bit alone).
     */
    public static OptionalLong mergedPages(int pid) {
        ProcText.checkPid(pid);
        if (!Files.exists(Path.of(ProcText.dir(pid), "ksm_stat"))) return OptionalLong.empty();
        long merged = 0;
        boolean seen = false;
        try (BufferedReader r = ProcText.open(pid, "ksm_stat")) {
            for (String line; (line = r.readLine()) != null; ) {
                if (line.startsWith("ksm_merging_pages ") || line.startsWith("ksm_zero_pages ")) {
                    merged += Long.parseLong(line.substring(line.indexOf(' ') + 1).trim());
                    seen = true;
                }
            }
        } catch (IOException e) {
            throw ProcText.translate(pid, "ksm_stat", ProcText.dir(pid) + "/ksm_stat", e);
        }
        if (!seen) throw new ProcfsException(ProcText.dir(pid) + "/ksm_stat has no ksm_merging_pages line");
        return OptionalLong.of(merged);
    }
}
