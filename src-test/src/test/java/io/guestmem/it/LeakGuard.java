package io.guestmem.it;

import io.guestmem.host.HugePagePools;
import io.guestmem.host.HugePageSize;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.procfs.Smaps;
import io.guestmem.procfs.VmFlag;
import io.guestmem.procfs.Vma;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Fails a test class that leaves anything of guestmem's behind: compares the process after the class (after
 * its {@code @AfterAll}) with a baseline taken before it (before its {@code @BeforeAll}).
 *
 * <p>What counts, and why it is precise without being flaky in a JVM that maps and unmaps memory itself:
 * <ul>
 * <li><b>Mappings of guestmem's kinds</b> present afterwards and not before (same start, end, permissions and
 *   name): every mapping whose name is not a regular file on disk (memfds, {@code /dev/zero (deleted)} shmem,
 *   {@code /anon_hugepage}, {@code [secretmem]}, {@code anon_inode:[kvm-gmem]}, {@code anon_inode:[perf_event]},
 *   {@code anon_inode:kvm-vcpu}...), every mapping with hugetlb pages, VM_LOCKED, VM_PFNMAP/VM_IO, MADV_HUGEPAGE
 *   or MADV_MERGEABLE in its smaps VmFlags (the JVM sets none of these unless told to), and every anonymous
 *   range laid out as a guestmem region: a PROT_NONE NORESERVE guard, the region, a PROT_NONE NORESERVE guard
 *   of the same size, none of it overlapping a mapping of the baseline. The JVM's own churn (libraries and
 *   jars it maps lazily are regular files; heap and code cache commit inside reservations that the baseline
 *   already holds; malloc arenas have no NORESERVE guard pair; thread stacks do when two are adjacent, but the
 *   JVM advises them MADV_NOHUGEPAGE, which RegionBuilder never does) matches none of these.</li>
 * <li><b>Open fds</b> to kernel objects (anon inodes, memfds, /dev, /proc, /sys, secretmem, hugetlbfs), compared
 *   as a multiset of link targets; jars, sockets and pipes are the JVM's and surefire's.</li>
 * <li><b>VmLck, VmPin and HugetlbPages</b> of this process, exactly.</li>
 * <li><b>Every hugetlb pool</b>: a pool bigger than before (a raise not put back) is a leak. The pools are
 *   system-wide and other processes' tests raise and restore them while this runs, so a bigger pool is re-read
 *   for up to 20 s before it counts, and a smaller one (someone else's raise, present at the baseline, put
 *   back since) is not counted; this process's own use of hugetlb memory is HugetlbPages, checked exactly,
 *   and its hugetlb mappings and memfds are mappings and fds above.</li>
 * </ul>
 * Limitation: an anonymous region created with {@code guardPages(0)} and neither locked nor advised has no
 * mark that tells it from the JVM's memory; only its fds (none) and locks are then checked.
 *
 * <p>Registered for every class of this module by auto-detection ({@code META-INF/services}); classes also
 * name it with {@code @ExtendWith(LeakGuard.class)}. jqwik containers use {@link #snapshot()} and
 * {@link #verify} directly.
 */
public final class LeakGuard implements BeforeAllCallback, AfterAllCallback {
    private static final ExtensionContext.Namespace NS = ExtensionContext.Namespace.create(LeakGuard.class);
    private static final long POOL_SETTLE_MS = 20_000;
    private static final AtomicInteger classesChecked = new AtomicInteger();
    private static final AtomicInteger leaksFound = new AtomicInteger();

    /** One view of the process. {@code mappings} are only guestmem's kinds; {@code spans} are every mapping. */
    public record Snapshot(List<Vma> mappings, List<long[]> spans, Map<String, Integer> fds, long vmLck, long vmPin,
                           long hugetlbPages, Map<HugePageSize, HugePagePools.Pool> pools) {}

    @Override
    public void beforeAll(ExtensionContext context) {
        context.getStore(NS).put(context.getRequiredTestClass(), snapshot());
    }

    @Override
    public void afterAll(ExtensionContext context) {
        Snapshot before = context.getStore(NS).remove(context.getRequiredTestClass(), Snapshot.class);
        if (before != null) verify(before, context.getRequiredTestClass().getSimpleName());
    }

    /** The process now. */
    public static Snapshot snapshot() {
        List<Vma> all = Smaps.self();
        List<long[]> spans = all.stream().map(v -> new long[] {v.start(), v.end()}).toList();
        ProcStatus st = ProcStatus.self();
        return new Snapshot(tracked(all, null), spans, fds(), st.vmLck(), st.vmPin(), st.hugetlbPages(), pools());
    }

    /** Throws an AssertionError naming every leak since {@code before}; records the guard's figures. */
    public static void verify(Snapshot before, String what) {
        List<String> leaks = leaks(before);
        classesChecked.incrementAndGet();
        leaksFound.addAndGet(leaks.size());
        ReliabilityReport.put("leak guard", "test classes checked (maps, fds, VmLck, VmPin, hugetlb pools)", classesChecked.get());
        ReliabilityReport.put("leak guard", "leaks found", leaksFound.get());
        if (!leaks.isEmpty()) throw new AssertionError(what + " leaked:\n  " + String.join("\n  ", leaks));
    }

    /** What differs from {@code before} (empty when nothing leaked). */
    public static List<String> leaks(Snapshot before) {
        return leaks(before, POOL_SETTLE_MS);
    }

    /** As {@link #leaks(Snapshot)}, waiting at most {@code poolSettleMs} for hugetlb pools to settle. */
    static List<String> leaks(Snapshot before, long poolSettleMs) {
        List<String> out = new ArrayList<>();
        List<Vma> all = Smaps.self();
        Set<String> old = before.mappings().stream().map(LeakGuard::key).collect(Collectors.toSet());
        for (Vma v : tracked(all, before.spans())) {
            if (!old.contains(key(v))) out.add("mapping " + v.mapping() + " " + Fmt.size(v.size()) + " flags " + codes(v));
        }
        Map<String, Integer> fds = fds();
        for (var e : fds.entrySet()) {
            int was = before.fds().getOrDefault(e.getKey(), 0);
            if (e.getValue() > was) out.add((e.getValue() - was) + " more open fd(s) to " + e.getKey());
        }
        ProcStatus st = ProcStatus.self();
        if (st.vmLck() != before.vmLck()) out.add("VmLck " + Fmt.size(st.vmLck()) + ", was " + Fmt.size(before.vmLck()));
        if (st.vmPin() != before.vmPin()) out.add("VmPin " + Fmt.size(st.vmPin()) + ", was " + Fmt.size(before.vmPin()));
        if (st.hugetlbPages() != before.hugetlbPages())
            out.add("HugetlbPages " + Fmt.size(st.hugetlbPages()) + ", was " + Fmt.size(before.hugetlbPages()));
        out.addAll(poolDifferences(before.pools(), poolSettleMs));
        return out;
    }

    // ---------------------------------------------------------------- mappings

    private static String key(Vma v) {
        return Long.toHexString(v.start()) + "-" + Long.toHexString(v.end()) + " " + v.perms() + " " + v.name();
    }

    private static String codes(Vma v) {
        return v.vmFlags().stream().map(f -> f.name().toLowerCase()).collect(Collectors.joining(","));
    }

    /**
     * The mappings of guestmem's kinds among {@code all} (sorted by address, as smaps lists them). The guard
     * pattern is only accepted where it overlaps none of {@code baselineSpans} (null: when taking the baseline,
     * where every candidate counts).
     */
    static List<Vma> tracked(List<Vma> all, List<long[]> baselineSpans) {
        List<Vma> out = new ArrayList<>();
        boolean[] inRegion = new boolean[all.size()];
        for (int i = 0; i < all.size(); i++) {
            if (!isGuard(all.get(i))) continue;
            int j = i + 1;
            boolean nohuge = false;
            while (j < all.size() && all.get(j).start() == all.get(j - 1).end() && !isGuard(all.get(j))) {
                nohuge |= all.get(j).has(VmFlag.NOHUGEPAGE);
                j++;
            }
            if (nohuge) continue; // a JVM thread stack between the guards of two stacks (the JVM marks stacks nh)
            if (j == i + 1 || j >= all.size() || all.get(j).start() != all.get(j - 1).end()
                    || all.get(j).size() != all.get(i).size()) continue;
            long start = all.get(i).start(), end = all.get(j).end();
            if (baselineSpans != null && baselineSpans.stream().anyMatch(s -> s[0] < end && start < s[1])) continue;
            for (int k = i; k <= j; k++) inRegion[k] = true;
        }
        for (int i = 0; i < all.size(); i++) if (inRegion[i] || isGuestmemKind(all.get(i))) out.add(all.get(i));
        return out;
    }

    /** A PROT_NONE, NORESERVE, private anonymous mapping: what RegionBuilder leaves on each side of a region. */
    private static boolean isGuard(Vma v) {
        return v.perms().equals("---p") && v.name().isEmpty() && !v.mapping().hasFile() && v.has(VmFlag.NORESERVE);
    }

    private static boolean isGuestmemKind(Vma v) {
        if (v.has(VmFlag.LOCKED) || v.has(VmFlag.LOCKONFAULT) || v.has(VmFlag.HUGETLB) || v.has(VmFlag.PFNMAP)
                || v.has(VmFlag.IO) || v.has(VmFlag.HUGEPAGE) || v.has(VmFlag.MERGEABLE)
                || v.kernelPageSize() > Posix.PAGE_SIZE) return true;
        String n = v.name();
        if (n.isEmpty()) return false;
        if (n.startsWith("[") && !n.startsWith("[secretmem") && !n.startsWith("[perf") && !n.startsWith("[anon_shmem")) {
            return false; // [heap], [stack], [vdso], [vvar], [vsyscall], [anon:...] are the process's own
        }
        if (n.startsWith("/") && !n.endsWith("(deleted)") && Files.isRegularFile(Path.of(n))) return false; // libraries, jars
        return true;
    }

    // ---------------------------------------------------------------- fds

    /** Open fds to kernel objects guestmem creates, by link target. */
    static Map<String, Integer> fds() {
        Map<String, Integer> out = new TreeMap<>();
        String selfFd = "/proc/" + Posix.getpid() + "/fd";
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            for (Path p : s.toList()) {
                String t;
                try {
                    t = Files.readSymbolicLink(p).toString();
                } catch (IOException gone) {
                    continue; // the listing's own fd, closed by now
                }
                if (t.equals(selfFd) || !isKernelObject(t)) continue;
                out.merge(t, 1, Integer::sum);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out;
    }

    private static boolean isKernelObject(String t) {
        if (t.equals("/dev/null") || t.equals("/dev/urandom") || t.equals("/dev/random") || t.startsWith("/dev/pts")
                || t.equals("/dev/tty")) return false;
        return t.startsWith("anon_inode:") || t.startsWith("/memfd:") || t.startsWith("memfd:") || t.startsWith("/dev/")
                || t.startsWith("/proc/") || t.startsWith("/sys/") || t.contains("secretmem") || t.startsWith("/anon_hugepage")
                || t.startsWith("/hugepages") || t.contains("(deleted)");
    }

    // ---------------------------------------------------------------- hugetlb pools

    private static Map<HugePageSize, HugePagePools.Pool> pools() {
        Map<HugePageSize, HugePagePools.Pool> m = new TreeMap<>();
        for (HugePageSize s : HugePagePools.sizes()) m.put(s, HugePagePools.pool(s));
        return m;
    }

    /** Pool differences that persist for {@link #POOL_SETTLE_MS} (other processes raise and restore pools too). */
    private static List<String> poolDifferences(Map<HugePageSize, HugePagePools.Pool> before, long settleMs) {
        long deadline = System.nanoTime() + settleMs * 1_000_000;
        while (true) {
            List<String> diff = new ArrayList<>();
            Map<HugePageSize, HugePagePools.Pool> now = pools();
            for (var e : before.entrySet()) {
                HugePagePools.Pool p = now.get(e.getKey());
                HugePagePools.Pool was = e.getValue();
                if (p.total() > was.total())
                    diff.add("hugetlb pool " + e.getKey() + " raised by " + (p.total() - was.total())
                            + " page(s) and not put back: " + p + ", was " + was);
                if (p.overcommit() != was.overcommit())
                    diff.add("hugetlb pool " + e.getKey() + " overcommit limit changed by " + (p.overcommit() - was.overcommit())
                            + " and not put back: " + p + ", was " + was);
                if (p.surplus() > was.surplus())
                    diff.add("hugetlb pool " + e.getKey() + " holds " + (p.surplus() - was.surplus())
                            + " more surplus page(s) than before: " + p + ", was " + was);
            }
            if (diff.isEmpty() || System.nanoTime() > deadline) return diff;
            try {
                Thread.sleep(250);
            } catch (InterruptedException ie) {
                Thread.currentThread().interrupt();
                return diff;
            }
        }
    }
}
