package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.host.HugePagePools;
import io.guestmem.host.HugePageSize;
import io.guestmem.lock.LockLimitChild;
import io.guestmem.sys.Posix;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * RLIMIT_MEMLOCK on real limits: a child JVM runs {@link LockLimitChild} with CAP_IPC_LOCK dropped
 * ({@code setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock}) and RLIMIT_MEMLOCK set to 8 MiB
 * ({@code prlimit --memlock}; this container lacks CAP_SYS_RESOURCE, so the limit cannot be raised above the
 * inherited hard limit, 8 MiB here), and reports VmLck after each step.
 */
@org.junit.jupiter.api.extension.ExtendWith(LeakGuard.class)
class MemslotLockLimitTest {
    static final long MiB = 1L << 20;

    @Test
    void withoutCapIpcLockTheLimitIsEnforcedAndEveryFailureRollsBack() throws Exception {
        Assumptions.assumeTrue(Posix.geteuid() == 0, "needs root to drop CAP_IPC_LOCK with setpriv for a child");
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/setpriv")), "setpriv (util-linux) is not installed");
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/prlimit")), "prlimit (util-linux) is not installed");
        long hard = io.guestmem.sys.Rlimit.getrlimit(io.guestmem.sys.Rlimit.RLIMIT_MEMLOCK).hard();
        long limit = hard == io.guestmem.sys.Rlimit.RLIM_INFINITY || hard >= 8 * MiB ? 8 * MiB : 0;
        Assumptions.assumeTrue(limit != 0, "the hard RLIMIT_MEMLOCK " + hard + " is below 8 MiB and cannot be raised");
        HugeSetup huge = HugeSetup.tryRaise();
        Map<String, String> r;
        try {
            r = runChild(limit, huge != null);
        } finally {
            if (huge != null) huge.res.close();
        }
        assertEquals("false", r.get("cap_ipc_lock"), "the child has no CAP_IPC_LOCK: " + r);
        assertEquals(Long.toString(limit), r.get("limit"));
        long base = Long.parseLong(r.get("baseline"));

        assertEquals("ENOMEM", r.get("over"), "a slot over the limit");
        assertEquals(base, num(r, "over_vmlck"), "VmLck unchanged after ENOMEM");
        assertEquals("false", r.get("over_locked"));

        assertEquals("OK", r.get("within"));
        assertEquals(base + limit / 2, num(r, "within_vmlck"));
        assertEquals(limit - limit / 2 - base, num(r, "within_headroom"));
        assertEquals("false", r.get("within_unlimited"));

        assertEquals("ENOMEM", r.get("second"), "L/2 + 3L/4 > L");
        assertEquals(base + limit / 2, num(r, "second_vmlck"), "the first stays locked, the second left nothing");
        assertEquals("true", r.get("second_first_locked"));
        assertEquals("false", r.get("second_locked"));

        assertEquals("1", r.get("unlock_all"));
        assertEquals(base, num(r, "unlock_all_vmlck"));

        assertEquals(base + limit / 2, num(r, "after_pin_vmlck"), "pinned when the limit was lowered");
        assertEquals("ENOMEM", r.get("end_check"), "account_locked_vm at the end sees the lowered limit");
        assertEquals(base, num(r, "end_check_vmlck"), "rolled back: every page munlocked");
        assertEquals("false", r.get("end_check_locked"));

        if (huge != null) {
            assertEquals("OK", r.get("huge"));
            assertEquals(base, num(r, "huge_vmlck"), "the kernel does not count hugetlb in VmLck");
            assertEquals(Long.toString(limit / 2 / Posix.PAGE_SIZE), r.get("huge_uncounted"));
            assertEquals("ENOMEM", r.get("huge_then_anon"), "L/2 of hugetlb + 3L/4 anon > L in base pages (VmLck alone would allow it)");
            assertEquals(base, num(r, "huge_then_anon_vmlck"));
        }
        assertEquals(base, num(r, "final_vmlck"));
        assertEquals("true", r.get("done"));
    }

    record HugeSetup(HugePagePools.Reservation res) {
        static HugeSetup tryRaise() {
            try {
                HugePageSize h = HugePagePools.size(2 * MiB);
                return new HugeSetup(HugePagePools.raise(h, 2));
            } catch (RuntimeException e) {
                System.out.println("hugetlb phase skipped: " + e.getMessage());
                return null;
            }
        }
    }

    static long num(Map<String, String> r, String k) {
        String v = r.get(k);
        assertTrue(v != null, "child printed no " + k + ": " + r);
        return Long.parseLong(v);
    }

    static Map<String, String> runChild(long limit, boolean hugetlb) {
        List<String> prefix = List.of("/usr/bin/prlimit", "--memlock=" + limit + ":" + limit,
                "/usr/bin/setpriv", "--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock");
        ChildJvm.Result r = ChildJvm.run(prefix, ChildJvm.classpath(), LockLimitChild.class,
                hugetlb ? List.of("hugetlb") : List.of(), 120);
        String out = r.output();
        System.out.println("child (" + String.join(" ", prefix) + " java ...):\n" + out);
        assertEquals(0, r.exit(), out);
        Map<String, String> m = new LinkedHashMap<>();
        for (String l : out.lines().toList()) {
            int eq = l.indexOf('=');
            if (!l.startsWith("#") && eq > 0) m.put(l.substring(0, eq), l.substring(eq + 1));
        }
        return m;
    }
}
