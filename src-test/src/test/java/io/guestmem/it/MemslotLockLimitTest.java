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
 * inherited hard limit, 8 MiB here), and reports VmPin and VmLck after each step: slots of writable memory are
 * pinned long-term and refused by the kernel itself over the limit, slots of read-only memory are mlocked and
 * refused by the library's {@code try_rlimit_memlock}, and both share the one budget.
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
        long pbase = Long.parseLong(r.get("pin_baseline"));

        // Long-term pins: the kernel charges them (VmPin; RLIMIT_MEMLOCK through io_uring's __io_account_mem).
        assertEquals("ENOMEM", r.get("over"), "a slot over the limit");
        assertEquals("kernel", r.get("over_by"), "the refusal is the kernel's own (io_uring_register)");
        assertEquals(pbase, num(r, "over_vmpin"), "VmPin unchanged after ENOMEM");
        assertEquals(base, num(r, "over_vmlck"));
        assertEquals("false", r.get("over_locked"));

        assertEquals("OK", r.get("within"));
        assertEquals("LONGTERM_PIN", r.get("within_kind"));
        assertEquals(pbase + limit / 2, num(r, "within_vmpin"), "VmPin grows by exactly the slot");
        assertEquals(base, num(r, "within_vmlck"), "a pin is not an mlock");
        assertEquals(limit - limit / 2 - base - pbase, num(r, "within_headroom"));
        assertEquals("false", r.get("within_unlimited"));

        assertEquals("ENOMEM", r.get("second"), "L/2 + 3L/4 > L");
        assertEquals("kernel", r.get("second_by"));
        assertEquals(pbase + limit / 2, num(r, "second_vmpin"), "the first stays pinned, the second left nothing");
        assertEquals("true", r.get("second_first_locked"));
        assertEquals("false", r.get("second_locked"));

        // mlocked slots (read-only memory) share the one budget with the pinned ones: try_rlimit_memlock's ENOMEM.
        assertEquals("ENOMEM", r.get("joint"), "3L/4 mlocked + L/2 pinned > L");
        assertEquals("library", r.get("joint_by"), "refused by try_rlimit_memlock before anything was locked");
        assertEquals(base, num(r, "joint_vmlck"));
        assertEquals("false", r.get("joint_locked"));
        assertEquals("OK", r.get("joint_fit"), "L/4 mlocked + L/2 pinned fits");
        assertEquals("MLOCK", r.get("joint_fit_kind"));
        assertEquals(base + limit / 4, num(r, "joint_fit_vmlck"));

        assertEquals("2", r.get("unlock_all"), "the pinned and the mlocked slot");
        assertEquals(pbase, num(r, "unlock_all_vmpin"));
        assertEquals(base, num(r, "unlock_all_vmlck"));

        assertEquals(pbase + limit / 2, num(r, "after_pin_vmpin"), "pinned when the limit was lowered");
        assertEquals("ENOMEM", r.get("end_check"), "account_locked_vm at the end sees the lowered limit");
        assertEquals("library", r.get("end_check_by"));
        assertEquals(pbase, num(r, "end_check_vmpin"), "rolled back: every page unpinned");
        assertEquals("false", r.get("end_check_locked"));

        if (huge != null) {
            assertEquals("OK", r.get("huge"));
            assertEquals("LONGTERM_PIN", r.get("huge_kind"));
            assertEquals(pbase + limit / 2, num(r, "huge_vmpin"), "pinned hugetlb counts in VmPin, in base pages");
            assertEquals("ENOMEM", r.get("huge_then_anon"), "L/2 of hugetlb + 3L/4 anon > L");
            assertEquals("kernel", r.get("huge_then_anon_by"));
            assertEquals("OK", r.get("huge_ro"));
            assertEquals("MLOCK", r.get("huge_ro_kind"));
            assertEquals(base, num(r, "huge_ro_vmlck"), "the kernel does not count mlocked hugetlb in VmLck");
            assertEquals(Long.toString(limit / 2 / Posix.PAGE_SIZE), r.get("huge_ro_uncounted"));
            assertEquals("ENOMEM", r.get("huge_ro_then_ro"), "L/2 of hugetlb + 3L/4 in base pages (VmLck alone would allow it)");
            assertEquals("library", r.get("huge_ro_then_ro_by"));
            assertEquals(base, num(r, "huge_ro_then_ro_vmlck"));
        }
        assertEquals(base, num(r, "final_vmlck"));
        assertEquals(pbase, num(r, "final_vmpin"));
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
