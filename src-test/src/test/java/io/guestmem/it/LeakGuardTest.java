package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.host.HugePageSize;
import io.guestmem.procfs.Pagemap;
import io.guestmem.sys.Posix;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/** The leak guard names each kind of leak it is meant to catch, and stays quiet through the JVM's own churn. */
@ExtendWith(LeakGuard.class)
class LeakGuardTest {
    static final long PAGE = Posix.PAGE_SIZE;

    private static List<String> leaksOf(LeakGuard.Snapshot before) {
        return LeakGuard.leaks(before, 0);
    }

    @Test
    void jvmChurnIsNotALeak() throws Exception {
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        // threads (stacks, malloc arenas), garbage (heap commits), classes (metaspace), a jar read
        List<Thread> ts = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            Thread t = new Thread(() -> {
                long s = 0;
                for (int k = 0; k < 200_000; k++) s += new byte[64 + (k & 1023)].length;
                if (s == 42) System.out.println(s);
            });
            t.start();
            ts.add(t);
        }
        for (Thread t : ts) t.join();
        System.gc();
        Class.forName("java.util.concurrent.Exchanger");
        List<String> leaks = leaksOf(before);
        assertTrue(leaks.isEmpty(), "false alarms: " + leaks);
    }

    @Test
    void anonymousRegionLeftOpenIsNamedByItsGuards() {
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        HostRegion r = HostRegion.anonymous(64 * PAGE).create();
        try {
            r.segment().set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
            List<String> leaks = leaksOf(before);
            assertTrue(leaks.stream().anyMatch(l -> l.contains(Long.toHexString(r.address()))), leaks.toString());
        } finally {
            r.close();
        }
        assertEquals(List.of(), leaksOf(before));
    }

    @Test
    void memfdRegionLeftOpenIsAMappingAndAnFd() {
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        HostRegion r = HostRegion.memfd(16 * PAGE).name("leakguard-probe").guardPages(0).create();
        try {
            List<String> leaks = leaksOf(before);
            assertTrue(leaks.stream().anyMatch(l -> l.startsWith("mapping") && l.contains("memfd:leakguard-probe")), leaks.toString());
            assertTrue(leaks.stream().anyMatch(l -> l.contains("fd(s) to /memfd:leakguard-probe")), leaks.toString());
        } finally {
            r.close();
        }
        assertEquals(List.of(), leaksOf(before));
    }

    @Test
    void lockedMemoryAndPagemapFdAreNamed() {
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        HostRegion r = HostRegion.anonymous(8 * PAGE).guardPages(0).mlock().create();
        Pagemap pm = Pagemap.openSelf();
        try {
            List<String> leaks = leaksOf(before);
            assertTrue(leaks.stream().anyMatch(l -> l.startsWith("VmLck")), leaks.toString());
            assertTrue(leaks.stream().anyMatch(l -> l.startsWith("mapping") && l.contains("locked")), leaks.toString());
            assertTrue(leaks.stream().anyMatch(l -> l.contains("/pagemap")), leaks.toString());
        } finally {
            r.close();
            pm.close();
        }
        assertEquals(List.of(), leaksOf(before));
    }

    @Test
    void aRaisedHugetlbPoolIsNamed() {
        HugePageSize size = HugePagePools.sizes().getFirst();
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        try (HugePagePools.Reservation res = HugePagePools.raise(size, 1)) {
            List<String> leaks = leaksOf(before);
            assertTrue(leaks.stream().anyMatch(l -> l.startsWith("hugetlb pool " + size)), leaks.toString());
            assertEquals(1, res.added());
        }
        assertEquals(List.of(), LeakGuard.leaks(before, 20_000));
    }
}
