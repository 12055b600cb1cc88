package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.guestmem.host.HugePagePools;
import io.guestmem.host.HugePageSize;
import io.guestmem.sys.Capabilities;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;

/**
 * Nothing the library changes outside its process outlives it: child JVMs run the library's setup paths
 * ({@link CrashChild}: hugetlb regions of each size the kernel offers, a KVM VM with a locked memslot and
 * a guest_memfd, the CLI's demo, snapshot files written and restored) and are killed with SIGKILL at random instants, many times; after each
 * kill the system is compared with before: every hugetlb pool's persistent, free, reserved and surplus
 * pages and its overcommit limit, files the library names (/dev/shm, the temp dir), pool guardian
 * processes, and in the snapshot writer's directory any temporary or any file under a final name that does not
 * verify whole. Every other run the test JVM holds a raise of its own on the same pools across the kill, so
 * the comparison also proves that a dying process takes back its own raise and not another's. Bounded by
 * a time budget (many more runs on a fast machine, at least two per scenario everywhere).
 */
class CrashSafetyTest {
    static final long BUDGET_NS = TimeUnit.SECONDS.toNanos(35);
    static final int MIN_RUNS = 2, MAX_RUNS = 15;

    record State(Map<String, HugePagePools.Pool> pools, List<String> files, int guardians) {}

    @Test
    void sigkillAtAnyInstantLeavesTheSystemAsItWas() throws Exception {
        assumeTrue(Capabilities.has(Capabilities.CAP_SYS_ADMIN), "raising hugetlb pools needs root (CAP_SYS_ADMIN)");
        List<String> scenarios = new ArrayList<>();
        for (HugePageSize s : HugePagePools.sizes()) scenarios.add("hugetlb-" + s.label());
        if (Files.exists(Path.of("/dev/kvm"))) scenarios.add("vm");
        else System.out.println("crash test: no /dev/kvm, the vm scenario is skipped");
        scenarios.add("demo");
        scenarios.add("snapshot");
        Files.createDirectories(CrashChild.SNAPSHOT_DIR);
        clear(CrashChild.SNAPSHOT_DIR);
        Random rnd = new Random();
        long seed = rnd.nextLong();
        rnd.setSeed(seed);
        System.out.println("crash test seed " + seed + ", scenarios " + scenarios);
        Map<String, Long> window = new TreeMap<>();
        Map<String, Integer> runs = new TreeMap<>(), points = new TreeMap<>();
        List<String> leftovers = new ArrayList<>();
        long start = System.nanoTime();
        int total = 0;
        for (int round = 0; round < MAX_RUNS; round++) {
            if (round >= MIN_RUNS && System.nanoTime() - start > BUDGET_NS) break;
            for (String sc : scenarios) {
                HugePagePools.Reservation own = null;
                HugePageSize ownSize = HugePagePools.sizes().stream().filter(s -> !s.gigantic()).findFirst().orElse(null);
                if (total % 2 == 1 && ownSize != null) own = HugePagePools.raise(ownSize, 1);
                try {
                    State before = state();
                    String point = killOnce(sc, window, rnd);
                    total++;
                    runs.merge(sc, 1, Integer::sum);
                    points.merge(sc + ":" + point, 1, Integer::sum);
                    // Up to 30 s to settle: a guardian restoring a 1 GiB pool whose raise the kill interrupted
                    // waits for the kernel's gigantic-page allocation, which compacts memory and took over 10 s
                    // once while other work shared the machine. Everything must still come back.
                    List<String> left = differences(before, 30_000);
                    if (sc.equals("snapshot")) left.addAll(snapshotLeftovers(CrashChild.SNAPSHOT_DIR));
                    if (!left.isEmpty()) leftovers.add(sc + " killed at " + point + (own != null ? " (with a raise of our own)" : "") + ": " + left);
                } finally {
                    if (own != null) own.close();
                }
            }
        }
        long secs = TimeUnit.NANOSECONDS.toSeconds(System.nanoTime() - start);
        System.out.println("crash test: " + total + " SIGKILLs in " + secs + " s; runs " + runs);
        System.out.println("crash test: kill points " + points);
        System.out.println("crash test: leftovers " + leftovers.size() + " " + leftovers);
        ReliabilityReport.put("crash safety", "child JVMs killed with SIGKILL at random instants (" + String.join(", ", scenarios) + ")", total);
        ReliabilityReport.put("crash safety", "distinct kill points hit (scenario:phase)", points.size());
        ReliabilityReport.put("crash safety", "kill points (scenario:phase=kills)", points);
        ReliabilityReport.put("crash safety", "leftovers after a kill (pools, surplus, overcommit, files, guardians, "
                + "half or temporary snapshot files)", leftovers.size());
        clear(CrashChild.SNAPSHOT_DIR);
        Files.delete(CrashChild.SNAPSHOT_DIR);
        assertEquals(List.of(), leftovers);
    }

    /** The control: a child that raises a pool the unsafe way leaves a leftover the comparison reports. */
    @Test
    void theComparisonSeesALeftoverOfAnUnsafeRaise() throws Exception {
        assumeTrue(Capabilities.has(Capabilities.CAP_SYS_ADMIN), "writing hugetlb knobs needs root (CAP_SYS_ADMIN)");
        assumeTrue(!HugePagePools.sizes().isEmpty(), "no hugetlb pools on this kernel");
        HugePageSize s = HugePagePools.sizes().getFirst();
        State before = state();
        killOnce("leaky", new TreeMap<>(), new Random());
        List<String> left = differences(before, 500);
        System.out.println("crash test control: " + left);
        // put the knob back by hand, as the library itself no longer has to
        Path knob = s.sysfsDir().resolve("nr_overcommit_hugepages");
        Files.writeString(knob, Long.toString(before.pools().get(s.label()).overcommit()));
        assertEquals(1, left.size(), left.toString());
        assertEquals(true, left.getFirst().startsWith("pool " + s.label()), left.toString());
        assertEquals(List.of(), differences(before, 2_000));
    }

    /**
     * What a killed snapshot writer left in its directory that it should not have: any name but the two final
     * ones (a temporary), or a file under a final name that does not open and verify whole. Clears the directory
     * for the next run.
     */
    static List<String> snapshotLeftovers(Path dir) throws IOException {
        List<String> bad = new ArrayList<>();
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : s.sorted().toList()) {
                String n = p.getFileName().toString();
                if (!n.equals("full.snap") && !n.equals("inc.snap")) {
                    bad.add("snapshot temporary left: " + n);
                    continue;
                }
                try (io.guestmem.snapshot.Snapshot snap = io.guestmem.snapshot.Snapshot.open(p)) {
                    snap.verify();
                } catch (IOException | RuntimeException e) {
                    bad.add("half a snapshot under its final name: " + n + ": " + e);
                }
            }
        }
        clear(dir);
        return bad;
    }

    private static void clear(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : s.toList()) Files.delete(p);
        }
    }

    /** The snapshot check's control: what a writer without O_TMPFILE and link could leave is reported. */
    @Test
    void theSnapshotCheckSeesATemporaryAndAHalfFile(@org.junit.jupiter.api.io.TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve(".full.snap.tmp-1-2"), "a named temporary a killed writer left");
        Files.write(dir.resolve("inc.snap"), "GMSNAPv1 and then nothing".getBytes(java.nio.charset.StandardCharsets.US_ASCII));
        List<String> bad = snapshotLeftovers(dir);
        System.out.println("snapshot check control: " + bad);
        assertEquals(2, bad.size(), bad.toString());
        assertEquals(true, bad.get(0).startsWith("snapshot temporary left"), bad.toString());
        assertEquals(true, bad.get(1).startsWith("half a snapshot under its final name: inc.snap"), bad.toString());
    }

    /** One child killed at a random instant; returns the phase it was in (or "startup"). */
    private static String killOnce(String scenario, Map<String, Long> window, Random rnd) throws Exception {
        // the child runs on the test's class path, so native access goes to the unnamed module
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
                "-Xmx256m", "-cp", String.join(java.io.File.pathSeparator, ChildJvm.classpath()), CrashChild.class.getName(), scenario));
        long t0 = System.nanoTime();
        Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        AtomicReference<String> phase = new AtomicReference<>("startup");
        AtomicReference<Long> firstIter = new AtomicReference<>();
        AtomicReference<String> failure = new AtomicReference<>();
        Thread reader = Thread.ofVirtual().start(() -> {
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream()))) {
                for (String l; (l = r.readLine()) != null; ) {
                    if (l.startsWith("PHASE ")) phase.set(l.substring(6));
                    else if (l.startsWith("ITER ") && firstIter.get() == null) firstIter.set(System.nanoTime() - t0);
                    else if (l.startsWith("FAILED ")) failure.set(l.substring(7));
                }
            } catch (IOException ignored) {
                // the child is gone
            }
        });
        Long w = window.get(scenario);
        if (w == null) {
            // Calibration on this machine: the first child runs one whole round (JVM start included), then dies.
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (firstIter.get() == null && p.isAlive() && System.nanoTime() < deadline) Thread.sleep(5);
            w = firstIter.get() != null ? firstIter.get() : System.nanoTime() - t0;
            window.put(scenario, w);
            System.out.println("crash test: " + scenario + " first round after " + w / 1_000_000 + " ms");
        } else {
            long at = (long) (rnd.nextDouble() * w * 1.5);
            TimeUnit.NANOSECONDS.sleep(at);
        }
        String point = p.isAlive() ? phase.get() : "exited-" + p.exitValue();
        p.destroyForcibly(); // SIGKILL
        if (!p.waitFor(30, TimeUnit.SECONDS)) throw new AssertionError(scenario + " child survived SIGKILL");
        reader.join(TimeUnit.SECONDS.toMillis(30));
        // a child that failed on its own before the kill is still checked for leftovers; say what it hit
        if (failure.get() != null) System.out.println("crash test: " + scenario + " child failed in " + phase.get() + ": " + failure.get());
        return point;
    }

    static State state() {
        Map<String, HugePagePools.Pool> pools = new TreeMap<>();
        for (HugePageSize s : HugePagePools.sizes()) pools.put(s.label(), HugePagePools.pool(s));
        List<String> files = new ArrayList<>();
        for (Path dir : List.of(Path.of("/dev/shm"), Path.of(System.getProperty("java.io.tmpdir")), Path.of("/dev/hugepages"))) {
            if (!Files.isDirectory(dir)) continue;
            try (Stream<Path> s = Files.list(dir)) {
                s.map(Path::toString).filter(n -> n.contains("guestmem") && !n.contains("guestmem-tests.lock")
                        && !n.contains("guestmem-child") && !n.contains("guestmem-cp")).sorted().forEach(files::add);
            } catch (IOException e) {
                files.add(dir + ": " + e);
            }
        }
        int guardians = (int) ProcessHandle.allProcesses()
                .filter(h -> h.info().arguments().map(a -> String.join(" ", a).contains("guestmem-pool-guardian")).orElse(false))
                .count();
        return new State(pools, files, guardians);
    }

    /** What differs from {@code before} and still differs after {@code settleMs} (the kernel frees as the child exits). */
    static List<String> differences(State before, long settleMs) throws InterruptedException {
        long deadline = System.nanoTime() + settleMs * 1_000_000;
        while (true) {
            State now = state();
            List<String> d = new ArrayList<>();
            for (var e : before.pools().entrySet()) {
                HugePagePools.Pool a = e.getValue(), b = now.pools().get(e.getKey());
                if (a.total() != b.total() || a.free() != b.free() || a.reserved() != b.reserved() || a.surplus() != b.surplus()
                        || a.overcommit() != b.overcommit())
                    d.add("pool " + e.getKey() + " now " + b + ", was " + a);
            }
            List<String> newFiles = new ArrayList<>(now.files());
            newFiles.removeAll(before.files());
            if (!newFiles.isEmpty()) d.add("files left: " + newFiles);
            if (now.guardians() > before.guardians()) d.add((now.guardians() - before.guardians()) + " pool guardian(s) still running");
            if (d.isEmpty() || System.nanoTime() > deadline) return d;
            Thread.sleep(50);
        }
    }
}
