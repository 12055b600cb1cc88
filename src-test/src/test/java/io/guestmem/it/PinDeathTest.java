package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.host.HugePagePools;
import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Pagemap;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;

import io.guestmem.lock.VmPinAccounting;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Process death releases long-term pins. A child JVM ({@link PinHoldChild}) write-locks a slot over a memfd,
 * pinned long-term; this test opens the same memfd through {@code /proc/<pid>/fd}, maps it, and asks the kernel
 * to collapse its 4K pages into a THP ({@code MADV_COLLAPSE}), which a pinned page blocks (EAGAIN: the extra
 * references of the pin). The child is then killed with SIGKILL: its VmPin is gone with it, and once the
 * kernel has torn its rings down (asynchronously, {@code io_ring_exit_work}) the same collapse succeeds — the
 * pages are no longer pinned, with no unlock ever having run.
 */
@org.junit.jupiter.api.extension.ExtendWith(LeakGuard.class)
class PinDeathTest {

    @Test
    void sigkillOfTheLockingProcessUnpinsItsPages() throws Exception {
        long pmd = HugePagePools.thpSize(), ps = Posix.PAGE_SIZE;
        Assumptions.assumeTrue(pmd > ps, "no transparent huge pages on this kernel");
        Assumptions.assumeTrue(Posix.geteuid() == 0, "opening another process's memfd through /proc needs root here");
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
                "-Xmx256m", "-cp", String.join(java.io.File.pathSeparator, ChildJvm.classpath()), PinHoldChild.class.getName()));
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        int fd = -1;
        long base = 0;
        try {
            Map<String, String> r = new LinkedHashMap<>();
            BufferedReader in = new BufferedReader(new InputStreamReader(p.getInputStream()));
            for (String l; (l = in.readLine()) != null && !l.equals("READY"); ) {
                int eq = l.indexOf('=');
                if (eq > 0) r.put(l.substring(0, eq), l.substring(eq + 1));
            }
            System.out.println("child: " + r);
            assertEquals("LONGTERM_PIN", r.get("kind"), r.toString());
            long bytes = Long.parseLong(r.get("bytes"));
            assertEquals(pmd, bytes);
            assertEquals(Long.parseLong(r.get("vmpin_before")) + VmPinAccounting.shownBytes(bytes), Long.parseLong(r.get("vmpin")),
                    "the child's VmPin grew by the slot (as this kernel shows a pin of a process with its capabilities)");
            long pid = p.pid();
            assertEquals(Long.toString(pid), r.get("pid"));

            fd = Posix.open("/proc/" + pid + "/fd/" + r.get("fd"), Posix.O_RDWR | Posix.O_CLOEXEC);
            base = Mman.mmap(0, 2 * pmd, Mman.PROT_NONE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
            long a = Mman.mmap((base + pmd - 1) & -pmd, pmd, Mman.PROT_READ | Mman.PROT_WRITE,
                    Mman.MAP_SHARED | Mman.MAP_FIXED, fd, 0);
            Mman.madvise(a, pmd, Mman.MADV_POPULATE_READ);
            long[] before = pfns(a, (int) (pmd / ps));
            assertEquals(Long.parseLong(r.get("pfn0")), before[0], "the same page the child pinned");

            int r0 = Mman.madviseRaw(a, pmd, Mman.MADV_COLLAPSE);
            Assumptions.assumeTrue(r0 != -Errno.EINVAL.number, "MADV_COLLAPSE unsupported here (kernel < 6.1)");
            System.out.println("MADV_COLLAPSE while the child pins: " + (r0 == 0 ? "0" : Errno.nameOf(-r0)));
            assertEquals(-Errno.EAGAIN.number, r0, "the child's pin blocks the collapse");
            assertArrayEquals(before, pfns(a, (int) (pmd / ps)), "the pinned pages stayed put");

            p.destroyForcibly(); // SIGKILL
            assertTrue(p.waitFor(30, TimeUnit.SECONDS), "the child died");
            assertFalse(Files.exists(Path.of("/proc/" + pid + "/status")), "the process and its VmPin are gone");

            long t0 = System.nanoTime();
            int rc = r0;
            int attempts = 0;
            while (rc != 0 && System.nanoTime() - t0 < TimeUnit.SECONDS.toNanos(20)) {
                attempts++;
                rc = Mman.madviseRaw(a, pmd, Mman.MADV_COLLAPSE);
                if (rc != 0) Thread.sleep(20);
            }
            long ms = (System.nanoTime() - t0) / 1_000_000;
            System.out.println("MADV_COLLAPSE after SIGKILL: " + (rc == 0 ? "0" : Errno.nameOf(-rc)) + " after "
                    + attempts + " attempt(s), " + ms + " ms (the rings are torn down asynchronously)");
            assertEquals(0, rc, "no pin is left once the process is gone");
            long[] after = pfns(a, (int) (pmd / ps));
            assertNotEquals(before[0], after[0], "the pages were replaced by a THP: nothing held them");
            try (KPageFlags kf = KPageFlags.open()) {
                assertTrue(kf.flags(after[0]).contains(KPageFlag.THP));
            }
            java.lang.foreign.MemorySegment s = java.lang.foreign.MemorySegment.ofAddress(a).reinterpret(pmd);
            assertEquals(5 * ps + 1, s.get(java.lang.foreign.ValueLayout.JAVA_LONG, 5 * ps), "the child's data survived");
        } finally {
            p.destroyForcibly();
            p.waitFor(30, TimeUnit.SECONDS);
            if (base != 0) Mman.munmap(base, 2 * pmd);
            if (fd >= 0) Posix.close(fd);
        }
    }

    static long[] pfns(long a, int n) {
        try (Pagemap pm = Pagemap.openSelf()) {
            long[] raw = pm.read(a, n);
            for (int i = 0; i < n; i++) raw[i] = pm.pfnOf(raw[i]);
            return raw;
        }
    }
}
