package io.guestmem.bench;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;
import org.openjdk.jmh.profile.GCProfiler;
import org.openjdk.jmh.results.RunResult;
import org.openjdk.jmh.results.format.ResultFormatType;
import org.openjdk.jmh.runner.Runner;
import org.openjdk.jmh.runner.RunnerException;
import org.openjdk.jmh.runner.options.ChainedOptionsBuilder;
import org.openjdk.jmh.runner.options.OptionsBuilder;
import org.openjdk.jmh.runner.options.TimeValue;

/**
 * {@code ./guestmem bench [--quick] [--only REGEX] [--no-reference]}: builds and runs the references
 * (rust-vmm vm-memory and the C limit, {@code bench/reference/}), runs the JMH benches in forks, and writes
 * {@code bench/results/latest.json} (JMH's JSON) and {@code bench/results/latest.md} (the table, the
 * ratios the issues set as targets with PASS/MISS, and the machine). Run from the repository root (the
 * launcher does), or set {@code -Dguestmem.root}.
 */
public final class BenchRunner {
    static final String USAGE = "usage: guestmem bench [--quick] [--only REGEX] [--no-reference] [--help]";

    /** Parsed command line. */
    record Args(boolean quick, String only, boolean reference) {}

    private BenchRunner() {}

    public static void main(String[] argv) throws Exception {
        if (argv.length == 1 && argv[0].equals("--vhost-user-blk")) { // a guest under QEMU, not JMH: a run of its own
            System.out.println(VhostUserBlkBench.run(Path.of(System.getProperty("guestmem.root", ".")).toAbsolutePath().normalize()));
            return;
        }
        Args args;
        try {
            args = parse(argv);
        } catch (IllegalArgumentException e) {
            System.err.println("guestmem bench: " + e.getMessage() + "; " + USAGE);
            System.exit(2);
            return;
        }
        if (args == null) {
            System.out.println(USAGE);
            System.out.println("  --quick         one fork, short warmup/measurement, the parameter points the targets name (under 5 minutes with the references)");
            System.out.println("  --only REGEX    only JMH benchmarks matching REGEX (e.g. 'GfnLookup|Pagemap')");
            System.out.println("  --no-reference  skip the vm-memory and C reference programs (ratios against them: unavailable)");
            System.out.println("results: bench/results/latest.json (JMH JSON) and bench/results/latest.md");
            System.out.println("guestmem bench --vhost-user-blk: a QEMU guest's O_DIRECT I/O on guestmem's vhost-user-blk back-end");
            System.out.println("  and on qemu-storage-daemon, in one run (bench/results/vhost-user-blk.md)");
            return;
        }
        Path root = Path.of(System.getProperty("guestmem.root", ".")).toAbsolutePath().normalize();
        if (!Files.isDirectory(root.resolve("bench/reference"))) {
            System.err.println("guestmem bench: run from the repository root (no bench/reference under " + root + ")");
            System.exit(1);
        }
        Path results = root.resolve("bench/results");
        Files.createDirectories(results);
        Machine before = Machine.probe();
        long t0 = System.nanoTime();

        References refs = new References(root, args.quick());
        if (args.reference()) {
            refs.runAll();
        } else {
            refs.skip("--no-reference");
        }

        Path json = results.resolve("latest.json");
        Collection<RunResult> runs = runJmh(args, json);
        Machine after = Machine.probe();
        double minutes = (System.nanoTime() - t0) / 60e9;
        String md = new Report(args, before, after, refs, runs, minutes).markdown();
        Files.writeString(results.resolve("latest.md"), md);
        System.out.println();
        System.out.println(md);
        System.out.printf(Locale.ROOT, "guestmem bench: wrote %s and %s (%.1f min)%n", json, results.resolve("latest.md"), minutes);
    }

    /** The parsed arguments, or null for --help. Throws IllegalArgumentException naming the bad argument. */
    static Args parse(String[] argv) {
        boolean quick = false, reference = true;
        String only = null;
        for (int i = 0; i < argv.length; i++) {
            switch (argv[i]) {
                case "--help", "-h" -> {
                    return null;
                }
                case "--quick" -> quick = true;
                case "--no-reference" -> reference = false;
                case "--only" -> {
                    if (i + 1 >= argv.length) throw new IllegalArgumentException("--only needs a REGEX");
                    only = argv[++i];
                    try {
                        Pattern.compile(only);
                    } catch (PatternSyntaxException e) {
                        throw new IllegalArgumentException("--only: bad regex '" + only + "'");
                    }
                }
                default -> throw new IllegalArgumentException("unknown argument '" + argv[i] + "'");
            }
        }
        return new Args(quick, only, reference);
    }

    /**
     * The JVM flags every fork needs: native access for FFM (to ALL-UNNAMED: JMH forks run on the class path of
     * the shaded benchmark jar), and no JDK 23+ warning about JMH's own Unsafe use.
     */
    static String[] forkJvmArgs() {
        List<String> a = new ArrayList<>(List.of("--enable-native-access=ALL-UNNAMED"));
        if (Runtime.version().feature() >= 23) a.add("--sun-misc-unsafe-memory-access=allow");
        return a.toArray(new String[0]);
    }

    /**
     * One JMH pass of the quick run: the benchmarks matching {@code include} with these parameter values. The
     * quick run measures what the targets name and nothing else: the 1-slot point only where a target compares
     * against it (the gpa -> slot step, the 1-slot lookup), 32764 slots for the KVM-limit rows (lookups and
     * memslot changes), and none of the accessors that are context only (atomic, volatile, the load floor), nor a
     * build of all the slots with a follower.
     */
    record Pass(String include, String[]... params) {}

    static final List<Pass> QUICK = List.of(
            new Pass("\\.(?!AccessBench|GfnLookupBench|MemslotUpdateBench)\\w+Bench\\."),
            new Pass("\\.AccessBench\\.gpaToSlot$", new String[] {"slots", "1", "512"}),
            new Pass("\\.AccessBench\\.(readU64|readU64Loop|write4k|sliceWrite4k|sliceWrite4kRaw|pwritev3|pwritev3Raw)$",
                    new String[] {"slots", "512"}),
            new Pass("\\.GfnLookupBench\\.", new String[] {"slots", "1", "512", "32764"}, new String[] {"pattern", "random"}),
            new Pass("\\.MemslotUpdateBench\\.(createDelete|moveAndBack)$", new String[] {"slots", "512", "32764"}),
            // building all the slots with a GuestMemory following is context only, and at 32764 the longest
            // single shot of the pass (32764 follower updates, five times)
            new Pass("\\.MemslotUpdateBench\\.buildAll$", new String[] {"slots", "512", "32764"}, new String[] {"follower", "none"}));

    private static Collection<RunResult> runJmh(Args args, Path json) throws RunnerException, IOException {
        String only = args.only() != null ? args.only() : "io\\.guestmem\\.bench\\..*Bench\\.";
        if (!args.quick()) {
            // 2 forks, 3 x 1 s warmup, 5 x 2 s measurement, every parameter point
            return new Runner(options(only, json).forks(2).warmupIterations(3).warmupTime(TimeValue.seconds(1))
                    .measurementIterations(5).measurementTime(TimeValue.seconds(2)).build()).run();
        }
        List<RunResult> all = new ArrayList<>();
        List<String> jsons = new ArrayList<>();
        Path part = json.resolveSibling("latest.part.json");
        for (Pass pass : QUICK) {
            // Warmup long enough for C2 to have compiled the hot path even with the cores shared; SingleShot
            // benches (prefault) count iterations as invocations: 2 warmup + 3 measured maps of 1 GiB.
            ChainedOptionsBuilder o = options(only, part).include(pass.include())
                    .forks(1).warmupIterations(2).warmupTime(TimeValue.milliseconds(350))
                    .measurementIterations(3).measurementTime(TimeValue.milliseconds(350));
            for (String[] p : pass.params()) o.param(p[0], java.util.Arrays.copyOfRange(p, 1, p.length));
            try {
                all.addAll(new Runner(o.build()).run());
            } catch (org.openjdk.jmh.runner.NoBenchmarksException e) {
                continue; // --only left nothing of this pass
            }
            jsons.add(Files.readString(part).strip());
        }
        Files.deleteIfExists(part);
        Files.writeString(json, joinJsonArrays(jsons));
        return all;
    }

    /**
     * The JMH options every run shares: benchmarks matching both {@code only} and each later include (JMH ORs
     * its includes, so {@code only} becomes an exclude of what it does not match).
     */
    private static ChainedOptionsBuilder options(String only, Path json) {
        return new OptionsBuilder()
                .exclude("^(?!.*(?:" + only + "))")
                .jvmArgsAppend(forkJvmArgs())
                .addProfiler(GCProfiler.class)
                .shouldFailOnError(false)
                .result(json.toString())
                .resultFormat(ResultFormatType.JSON);
    }

    /** JMH's JSON arrays of several passes as one array. */
    static String joinJsonArrays(List<String> arrays) {
        StringBuilder b = new StringBuilder("[");
        for (String a : arrays) {
            if (!a.startsWith("[") || !a.endsWith("]")) throw new IllegalStateException("not a JMH JSON array: " + a.substring(0, Math.min(40, a.length())));
            String inner = a.substring(1, a.length() - 1).strip();
            if (inner.isEmpty()) continue;
            if (b.length() > 1) b.append(",");
            b.append("\n").append(inner);
        }
        return b.append("\n]\n").toString();
    }

    static String fmt(double v) {
        if (Double.isNaN(v)) return "n/a";
        double a = Math.abs(v);
        if (a >= 100) return String.format(Locale.ROOT, "%.0f", v);
        if (a >= 10) return String.format(Locale.ROOT, "%.1f", v);
        if (a >= 1) return String.format(Locale.ROOT, "%.2f", v);
        return String.format(Locale.ROOT, "%.3f", v);
    }

    static String read(Path p) {
        try {
            return Files.readString(p);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
