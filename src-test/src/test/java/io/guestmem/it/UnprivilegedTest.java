package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.sys.Posix;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * The library as an ordinary user (uid 65534, no capabilities, no access to /dev/kvm): what can work works, pfns
 * come back hidden (never 0), the rest fails with a message that names the call and the errno.
 */
@ExtendWith(LeakGuard.class)
class UnprivilegedTest {
    @Test
    void anOrdinaryUserGetsWhatTheKernelAllowsAndClearRefusals() {
        Assumptions.assumeTrue(Posix.geteuid() == 0, "needs root to start a child as uid 65534 (setpriv)");
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/setpriv")), "setpriv (util-linux) is not installed");
        // /dev/kvm here is crw------- root: uid 65534 cannot open it; --clear-groups drops a kvm group anyway.
        ChildJvm.Result r = ChildJvm.run(List.of("/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "--inh-caps=-all", "--no-new-privs"), ChildJvm.worldReadableClasspath(), UnprivilegedProbe.class, List.of(), 120);
        System.out.println("unprivileged child saw:\n" + r.output());
        assertEquals(0, r.exit(), r.output());
        assertTrue(r.output().contains("DONE") && r.lines("UNEXPECTED").isEmpty(), r.output());
        assertTrue(r.output().contains("INFO uid=65534 CapEff=0 "), r.output());
        assertTrue(r.output().contains("pfnVisible=false"), r.output());
        List<String> regions = r.lines("WORKS region ");
        assertEquals(4, regions.size(), r.output());
        for (String l : regions) {
            String present = l.replaceAll(".* present=(\\d+).*", "$1"), pages = l.replaceAll(".* pages=(\\d+).*", "$1");
            assertEquals(pages, present, "prefaulted pages all present: " + l);
            assertTrue(l.contains("hidden=" + present) && l.endsWith("pfn0=0"), "every present pfn hidden, none 0: " + l);
        }
        assertTrue(r.output().contains("WORKS memslots gfn->hva and guest memory agree=true"), r.output());
        assertTrue(r.output().contains("WORKS follow_pfn ok=true pfnHidden=true pfn0=false"), r.output());
        assertTrue(r.output().contains("WORKS mlock within RLIMIT_MEMLOCK VmLck=262144"), r.output());
        List<String> refused = r.lines("REFUSED ");
        assertEquals(4, refused.size(), r.output());
        // Where the machine has no /dev/kvm at all (a kernel that does not bind KVM), opening it is ENOENT for everyone.
        boolean noKvm = !java.nio.file.Files.exists(java.nio.file.Path.of("/dev/kvm"));
        for (String l : refused)
            assertTrue(l.matches(".*(EACCES|EPERM|ENOMEM|EAGAIN|root needed|Permission denied).*")
                    || noKvm && l.startsWith("REFUSED kvm open") && l.contains("ENOENT from open(/dev/kvm"), "a clear reason: " + l);
        ReliabilityReport.put("unprivileged (uid 65534, no capabilities, no /dev/kvm)", "works",
                "anon/shmem/memfd/THP regions (all pages present, pfns hidden, none 0), memslots + gfn→hva + guest memory, "
                        + "follow_pfn (pfn HIDDEN), mlock within RLIMIT_MEMLOCK");
        ReliabilityReport.put("unprivileged (uid 65534, no capabilities, no /dev/kvm)", "refused with errno and call named",
                String.join("; ", refused.stream().map(l -> l.substring(8).replaceAll(":.*?(E[A-Z]+|root needed).*", ": $1")).toList()));
    }
}
