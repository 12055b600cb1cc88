package io.guestmem.bench;

import io.guestmem.sys.Posix;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * The two reference programs, built and run in the same session as the JMH benches so that every ratio
 * compares numbers taken on the same machine at the same time:
 * <ul>
 *   <li>{@code bench/reference/vm-memory}: rust-vmm vm-memory 0.10 from Debian's crate sources
 *       (librust-vm-memory-dev, installed with apt-get when missing and we are root), built offline.</li>
 *   <li>{@code bench/reference/limit/vmlimit.c}: the raw limit in C (gcc).</li>
 * </ul>
 * A reference that cannot be built or run is recorded as unavailable with the reason; no number is ever
 * made up for it.
 */
final class References {
    /** One measurement printed by a reference program. {@code pages} is "4k"/"thp", or "" when not stated. */
    record Line(String source, String bench, String pages, long slots, double nsPerOp, double thpPercent) {}

    static final String VM_MEMORY = "vm-memory", LIMIT = "C limit";
    private static final Pattern FIELD = Pattern.compile("\"(\\w+)\":(\"([^\"]*)\"|[-0-9.eE+]+)");

    private final Path root, log;
    private final boolean quick;
    final List<Line> lines = new ArrayList<>();
    /** Per source: "ok ..." or "unavailable: why". */
    final List<String> status = new ArrayList<>();

    References(Path root, boolean quick) {
        this.root = root;
        this.quick = quick;
        this.log = root.resolve("bench/target/reference.log");
    }

    void skip(String why) {
        status.add(VM_MEMORY + ": not run (" + why + ")");
        status.add(LIMIT + ": not run (" + why + ")");
    }

    void runAll() throws IOException {
        Files.createDirectories(log.getParent());
        Files.writeString(log, "");
        runVmMemory();
        runLimit();
    }

    private String iterations() {
        return quick ? "2000000" : "20000000";
    }

    /** Rounds of 256 chains per repetition of the virtq walk (about 0.1-0.5 s each on 2 vCPUs, full run). */
    private String virtqRounds() {
        return quick ? "2000" : "10000";
    }

    /** Dependent loads per repetition of the chase: fewer over 65536 nodes, where each one misses the caches. */
    private String chaseIters(int nodes) {
        return nodes > 4096 ? (quick ? "200000" : "1000000") : (quick ? "2000000" : "10000000");
    }

    /** The device-shaped runs of both references: virtq at 8 and 512 slots, chase over 1024 and 65536 nodes. */
    private List<List<String>> deviceArgs() {
        return List.of(List.of("8", virtqRounds()), List.of("512", virtqRounds()),
                List.of("--chase", "1024", chaseIters(1024)), List.of("--chase", "65536", chaseIters(65536)));
    }

    private void runVmMemory() {
        Path dir = root.resolve("bench/reference/vm-memory");
        try {
            if (!hasVmMemoryCrate()) {
                if (Posix.geteuid() != 0) throw new Unavailable("librust-vm-memory-dev is not installed and we are not root to apt-get it");
                say("installing librust-vm-memory-dev (Debian's vm-memory 0.10 crate sources) with apt-get");
                if (run(List.of("apt-get", "install", "-y", "librust-vm-memory-dev"), dir, 600).rc != 0) {
                    run(List.of("apt-get", "update"), dir, 600);
                    if (run(List.of("apt-get", "install", "-y", "librust-vm-memory-dev"), dir, 600).rc != 0 || !hasVmMemoryCrate())
                        throw new Unavailable("apt-get install librust-vm-memory-dev failed (see " + root.relativize(log) + ")");
                }
            }
            if (!onPath("cargo")) throw new Unavailable("cargo is not on PATH");
            say("building the vm-memory reference (cargo, offline)");
            if (run(List.of("cargo", "build", "--release", "--offline", "--quiet"), dir, 900).rc != 0)
                throw new Unavailable("cargo build failed (see " + root.relativize(log) + ")");
            String bin = dir.resolve("target/release/vmmem-ref").toString();
            for (String slots : List.of("1", "512")) {
                say("running vm-memory reference, " + slots + " slot(s)");
                Result r = run(List.of(bin, slots, iterations()), dir, 900);
                if (r.rc != 0) throw new Unavailable("vmmem-ref " + slots + " exited " + r.rc + " (see " + root.relativize(log) + ")");
                parse(VM_MEMORY, r.stdout);
            }
            // memslot updates: insert_region/remove_region, the rows of MemslotUpdateBench, at the slot counts
            // the JMH pass runs (quick: 512 only; vm-memory's 32764 alone takes 22 s, its insert is O(n))
            for (String slots : quick ? List.of("512") : List.of("512", "4096", "32764")) {
                say("running vm-memory reference, memslot updates at " + slots + " slots");
                Result r = run(List.of(bin, "--memslots", slots, quick ? "20" : "200"), dir, 900);
                if (r.rc != 0) throw new Unavailable("vmmem-ref --memslots " + slots + " exited " + r.rc + " (see " + root.relativize(log) + ")");
                parse(VM_MEMORY, r.stdout);
            }
            // the device-shaped walks (src/bin/virtq.rs): the rows of VirtqBench and ChaseBench
            String vq = dir.resolve("target/release/virtq").toString();
            for (List<String> a : deviceArgs()) {
                say("running vm-memory reference, virtq " + String.join(" ", a));
                List<String> cmd = new ArrayList<>(List.of(vq));
                cmd.addAll(a);
                Result r = run(cmd, dir, 900);
                if (r.rc != 0) throw new Unavailable("virtq " + String.join(" ", a) + " exited " + r.rc + " (see " + root.relativize(log) + ")");
                parse(VM_MEMORY, r.stdout);
            }
            status.add(VM_MEMORY + ": vm-memory 0.10 (" + vmMemoryCrate() + "), 4K pages (its own mmap, no THP advice), "
                    + iterations() + " ops x best of 5; virtq_walk " + virtqRounds() + " rounds of 256 chains x best of 5;"
                    + " chase_gpa: the slots column is the node count");
        } catch (Unavailable e) {
            status.add(VM_MEMORY + ": UNAVAILABLE, " + e.getMessage() + "; ratios against it are not reported");
            say("vm-memory reference unavailable: " + e.getMessage());
        }
    }

    private void runLimit() {
        Path src = root.resolve("bench/reference/limit/vmlimit.c");
        Path bin = root.resolve("bench/target/vmlimit");
        try {
            if (!onPath("gcc")) throw new Unavailable("gcc is not on PATH");
            say("building the C limit (gcc -O2)");
            if (run(List.of("gcc", "-O2", "-Wall", "-pthread", "-o", bin.toString(), src.toString()), root, 300).rc != 0)
                throw new Unavailable("gcc failed (see " + root.relativize(log) + ")");
            for (List<String> a : List.of(List.of("1", iterations()), List.of("512", iterations()),
                    List.of("--pagemap", "1024", quick ? "2" : "5"), List.of("--uffd", "64", quick ? "2" : "5"),
                    List.of("--virtq", "8", virtqRounds()), List.of("--virtq", "512", virtqRounds()),
                    List.of("--chase", "1024", chaseIters(1024)), List.of("--chase", "65536", chaseIters(65536)),
                    List.of("--lock", Long.toString(LockBench.SIZE >> 20), quick ? "5" : "20"),
                    List.of("--dirty", quick ? "3" : "10"))) {
                List<String> cmd = new ArrayList<>();
                cmd.add(bin.toString());
                cmd.addAll(a);
                say("running C limit " + String.join(" ", a));
                Result r = run(cmd, root, 900);
                if (r.rc != 0) throw new Unavailable("vmlimit " + String.join(" ", a) + " exited " + r.rc);
                parse(LIMIT, r.stdout);
            }
            status.add(LIMIT + ": gcc -O2, own mmap per slot, 4K (MADV_NOHUGEPAGE) and THP (MADV_HUGEPAGE), best of 5;"
                    + " virtq_walk and chase_gpa translate gpa -> hva through a flat table per MiB; chase_*: the slots column is the node count;"
                    + " lock_unlock: MemslotLock's system calls for a lock + unlock of a prefaulted region, best of 5 (quick) or 20;"
                    + " dirty_*: ns per dirty page of a 4 GiB guest with 1% written, best of 3 (quick) or 10 rounds (dirty_kvm_* x86 only)");
        } catch (Unavailable e) {
            status.add(LIMIT + ": UNAVAILABLE, " + e.getMessage() + "; ratios against it are not reported");
            say("C limit unavailable: " + e.getMessage());
        }
    }

    /** The reference's ns/op, or NaN when it did not run. {@code pages} null matches any. */
    double ns(String source, String bench, String pages, long slots) {
        for (Line l : lines) {
            if (l.source.equals(source) && l.bench.equals(bench) && l.slots == slots && (pages == null || pages.equals(l.pages)))
                return l.nsPerOp;
        }
        return Double.NaN;
    }

    private void parse(String source, String out) {
        for (String line : out.split("\n")) {
            if (!line.startsWith("{")) continue;
            String bench = null, pages = "";
            long slots = 0;
            double ns = Double.NaN, thp = Double.NaN;
            Matcher m = FIELD.matcher(line);
            while (m.find()) {
                String k = m.group(1), v = m.group(3) != null ? m.group(3) : m.group(2);
                switch (k) {
                    case "bench" -> bench = v;
                    case "pages" -> pages = v;
                    case "slots" -> slots = Long.parseLong(v);
                    case "nsPerOp" -> ns = Double.parseDouble(v);
                    case "thpPercent" -> thp = Double.parseDouble(v);
                    default -> { }
                }
            }
            if (bench != null && !Double.isNaN(ns)) lines.add(new Line(source, bench, pages, slots, ns, thp));
        }
    }

    private static boolean hasVmMemoryCrate() {
        return vmMemoryCrate() != null;
    }

    private static String vmMemoryCrate() {
        Path reg = Path.of("/usr/share/cargo/registry");
        if (!Files.isDirectory(reg)) return null;
        try (Stream<Path> s = Files.list(reg)) {
            return s.map(p -> p.getFileName().toString()).filter(n -> n.startsWith("vm-memory-0.10")).findFirst()
                    .map(n -> "/usr/share/cargo/registry/" + n).orElse(null);
        } catch (IOException e) {
            return null;
        }
    }

    private static boolean onPath(String exe) {
        for (String d : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            if (Files.isExecutable(Path.of(d, exe))) return true;
        }
        return false;
    }

    private record Result(int rc, String stdout) {}

    private static final class Unavailable extends Exception {
        Unavailable(String why) {
            super(why);
        }
    }

    /** Runs a command; stderr (and the command line) go to the reference log, stdout is returned. */
    private Result run(List<String> cmd, Path dir, int timeoutSeconds) throws Unavailable {
        try {
            Files.writeString(log, "$ " + String.join(" ", cmd) + "\n", java.nio.file.StandardOpenOption.APPEND);
            ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile())
                    .redirectError(ProcessBuilder.Redirect.appendTo(log.toFile()));
            pb.environment().put("DEBIAN_FRONTEND", "noninteractive");
            Process p = pb.start();
            p.getOutputStream().close();
            // Output is a few lines: reading it to the end before waiting cannot deadlock on a full pipe.
            String out = new String(p.getInputStream().readAllBytes());
            if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new Unavailable(cmd.get(0) + " did not finish within " + timeoutSeconds + " s");
            }
            Files.writeString(log, out, java.nio.file.StandardOpenOption.APPEND);
            return new Result(p.exitValue(), out);
        } catch (IOException e) {
            throw new Unavailable("cannot run " + cmd.get(0) + ": " + e.getMessage());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Unavailable("interrupted while running " + cmd.get(0));
        }
    }

    private static void say(String s) {
        System.out.println("guestmem bench: " + s);
    }

    @Override
    public String toString() {
        return String.format(Locale.ROOT, "References[%d lines, %s]", lines.size(), status);
    }
}
