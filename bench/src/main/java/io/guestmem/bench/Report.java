package io.guestmem.bench;

import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.openjdk.jmh.results.Result;
import org.openjdk.jmh.results.RunResult;

/**
 * {@code bench/results/latest.md}: the machine, every JMH result, the reference numbers, and the targets of
 * issues 7 and 11 as ratios taken in this one run, each PASS, MISS or n/a (with the reason it could not be
 * computed: a bench or reference that did not run never turns into a number).
 */
final class Report {
    /** One JMH result row. */
    record Row(String bench, Map<String, String> params, double score, double error, String unit, double bytesPerOp,
               double median, double best, long samples) {
        String paramText() {
            StringBuilder b = new StringBuilder();
            params.forEach((k, v) -> b.append(b.isEmpty() ? "" : " ").append(k).append('=').append(v));
            return b.toString();
        }

        /** The score in ns (s/op units converted), for ratios. */
        double ns() {
            return switch (unit) {
                case "ns/op" -> score;
                case "us/op" -> score * 1e3;
                case "ms/op" -> score * 1e6;
                case "s/op" -> score * 1e9;
                default -> Double.NaN;
            };
        }
    }

    private record Target(String what, String measured, String goal, String verdict) {}

    /** Benches whose library API is not in this build (the class is absent). */
    static final Map<String, String> NEEDS = new LinkedHashMap<>();

    static {
        NEEDS.put("FollowPfnBench", "io.guestmem.mmu.PfnCache and FollowPfnBatch (branch mmu)");
        NEEDS.put("HostLevelBench", "io.guestmem.mmu host mapping level (branch mmu)");
        NEEDS.put("LockBench", "io.guestmem.lock.MemslotLock (branch lock)");
        NEEDS.put("AccessBench", "io.guestmem.access.GuestMemory (branch access)");
    }

    private final BenchRunner.Args args;
    private final Machine before, after;
    private final References refs;
    private final List<Row> rows = new ArrayList<>();
    private final double minutes;

    Report(BenchRunner.Args args, Machine before, Machine after, References refs, Collection<RunResult> runs, double minutes) {
        this.args = args;
        this.before = before;
        this.after = after;
        this.refs = refs;
        this.minutes = minutes;
        for (RunResult r : runs) {
            String full = r.getParams().getBenchmark();
            String[] parts = full.split("\\.");
            String bench = parts[parts.length - 2] + "." + parts[parts.length - 1];
            Map<String, String> params = new LinkedHashMap<>();
            for (String k : r.getParams().getParamsKeys()) params.put(k, r.getParams().getParam(k));
            Result<?> p = r.getPrimaryResult();
            Result<?> alloc = r.getSecondaryResults().get("gc.alloc.rate.norm");
            rows.add(new Row(bench, params, p.getScore(), p.getScoreError(), p.getScoreUnit(),
                    alloc == null ? Double.NaN : alloc.getScore(), p.getStatistics().getPercentile(50.0),
                    p.getStatistics().getMin(), p.getStatistics().getN()));
        }
        rows.sort(Comparator.comparing(Row::bench));
    }

    /** The row of {@code bench} whose params include all of {@code kv} ("k", "v", ...), or null. */
    Row row(String bench, String... kv) {
        outer:
        for (Row r : rows) {
            if (!r.bench.equals(bench)) continue;
            for (int i = 0; i < kv.length; i += 2) if (!kv[i + 1].equals(r.params.get(kv[i]))) continue outer;
            return r;
        }
        return null;
    }

    /**
     * {@code r} scored by its median iteration instead of the mean: for single-shot benches (prefault), where
     * one iteration in ten or so stalls for 0.1-2.5 s on this nested host whatever the thread count (the host
     * backing memory it has not backed yet), and the mean of ten then measures the host's stall, not the code.
     */
    static Row byMedian(Row r) {
        return r == null ? null : new Row(r.bench, r.params, r.median, r.error, r.unit, r.bytesPerOp, r.median, r.best, r.samples);
    }

    /**
     * {@code r} scored by its best measured iteration: the statistic the references report (the C and Rust
     * programs print the best of 5 repetitions), so that a ratio to them compares like with like. On this
     * host a memory-bound iteration can run 2-10x slower than the next for reasons outside the process (the
     * C program's own repetitions vary too; it keeps the best).
     */
    static Row byBest(Row r) {
        return r == null ? null : new Row(r.bench, r.params, r.best, r.error, r.unit, r.bytesPerOp, r.median, r.best, r.samples);
    }

    String markdown() {
        StringBuilder b = new StringBuilder();
        b.append("# guestmem benchmarks (").append(args.quick() ? "--quick" : "full").append(" run)\n\n");
        b.append("- date: ").append(ZonedDateTime.now().format(DateTimeFormatter.ISO_OFFSET_DATE_TIME)).append('\n');
        b.append("- kernel: ").append(before.kernel()).append('\n');
        b.append("- CPU: ").append(before.cpu()).append(", ").append(before.cores()).append(" cores\n");
        b.append("- JDK: ").append(before.jdk()).append('\n');
        b.append("- THP: ").append(before.thp()).append('\n');
        b.append(String.format(Locale.ROOT, "- load average (1 min / 5 min): %.2f / %.2f at start, %.2f / %.2f at end; run took %.1f min%n",
                before.load1(), before.load5(), after.load1(), after.load5(), minutes));
        if (args.only() != null) b.append("- only benchmarks matching `").append(args.only()).append("`\n");
        if (before.busy() || after.busy()) {
            b.append("\n> **NOISY**: the load average was above half the core count: other work shared the cores, so these")
                    .append(" numbers (and the ratios) are noisy. Re-run on a quiet machine before trusting a MISS or a PASS")
                    .append(" by a small margin.\n");
        }
        if (args.quick()) {
            b.append("\n> --quick: 1 fork, 2 x 350 ms warmup, 3 x 350 ms measurement, only the parameter points a target names (slots 1 where a target compares against one slot, 512, and 32764 for lookups and memslot changes; random lookups; no context-only accessor); vm-memory's memslot updates at 512 slots only; errors are wide. The full run")
                    .append(" (`./guestmem bench`) uses 2 forks, 3 x 1 s warmup, 5 x 2 s measurement.\n");
        }

        b.append("\n## Targets (ratios within this run)\n\n| target | measured | goal | result |\n|---|---|---|---|\n");
        for (Target t : targets()) {
            b.append("| ").append(t.what).append(" | ").append(t.measured).append(" | ").append(t.goal).append(" | ")
                    .append(t.verdict).append(" |\n");
        }

        b.append("\n## JMH results\n\nError is JMH's 99.9% confidence half-width; B/op from `-prof gc` (gc.alloc.rate.norm).")
                .append(" Per-page benches, GfnLookupBench.gfnToHvaLoop and AccessBench.readU64Loop use @OperationsPerInvocation, so ns/op is ns per page (per lookup, per read);"
                        + " VirtqBench.round is ns per chain (256 per round), ChaseBench.chase ns per dependent read.")
                .append(" PrefaultBench maps 1 GiB per op: s/op is seconds per GiB. Score is the mean of the measured iterations;")
                .append(" median and best are of the same iterations (the references report their best repetition).\n\n")
                .append("| benchmark | params | score | error | median | best | unit | B/op |\n|---|---|---:|---:|---:|---:|---|---:|\n");
        for (Row r : rows) {
            String unit = r.bench.startsWith("PrefaultBench") && r.unit.equals("s/op") ? "s/GiB" : r.unit;
            b.append("| ").append(r.bench).append(" | ").append(r.paramText()).append(" | ").append(BenchRunner.fmt(r.score))
                    .append(" | ").append(BenchRunner.fmt(r.error)).append(" | ").append(BenchRunner.fmt(r.median))
                    .append(" | ").append(BenchRunner.fmt(r.best)).append(" | ").append(unit).append(" | ")
                    .append(Double.isNaN(r.bytesPerOp) ? "n/a" : r.bytesPerOp < 0.01 ? "0" : BenchRunner.fmt(r.bytesPerOp)).append(" |\n");
        }
        if (rows.isEmpty()) b.append("| (no JMH result: see the console output) | | | | | | | |\n");

        b.append("\n## References (same run)\n\n");
        for (String s : refs.status) b.append("- ").append(s).append('\n');
        if (!refs.lines.isEmpty()) {
            b.append("\n| source | bench | pages | slots | ns/op | THP-mapped |\n|---|---|---|---:|---:|---:|\n");
            for (References.Line l : refs.lines) {
                b.append("| ").append(l.source()).append(" | ").append(l.bench()).append(" | ")
                        .append(l.pages().isEmpty() ? "4k" : l.pages()).append(" | ").append(l.slots() == 0 ? (l.bench().startsWith("uffd_") ? "64 MiB" : "1 GiB")
                                : l.bench().startsWith("chase_") ? "512 (" + l.slots() + " nodes)"
                                : l.bench().equals("lock_unlock") || l.bench().startsWith("dirty_") ? l.slots() + " MiB" : String.valueOf(l.slots()))
                        .append(" | ").append(BenchRunner.fmt(l.nsPerOp())).append(" | ")
                        .append(Double.isNaN(l.thpPercent()) ? "n/a" : BenchRunner.fmt(l.thpPercent()) + "%").append(" |\n");
            }
        }

        List<String> missing = new ArrayList<>();
        NEEDS.forEach((bench, api) -> {
            try {
                Class.forName("io.guestmem.bench." + bench);
            } catch (ClassNotFoundException e) {
                missing.add(bench + " (needs " + api + ", not in main when this bench module was built)");
            }
        });
        if (!missing.isEmpty()) {
            b.append("\n## Not built\n\n");
            for (String m : missing) b.append("- ").append(m).append('\n');
        }
        return b.toString();
    }

    private List<Target> targets() {
        List<Target> t = new ArrayList<>();
        // gfn -> hva. Loop against loop, as for readU64: vm-memory's reference is a tight loop over the
        // sequence, and a per-invocation op also carries JMH's own index step and call (shown as context).
        Row g512 = row("GfnLookupBench.gfnToHvaLoop", "slots", "512", "pattern", "random");
        double vm512 = refs.ns(References.VM_MEMORY, "get_host_address", null, 512);
        t.add(faster("gfnToHvaLoop random, 512 slots vs vm-memory get_host_address loop (512), best vs best", byBest(g512), vm512, "vm-memory", 3.0));
        Row g1 = row("GfnLookupBench.gfnToHvaLoop", "slots", "1", "pattern", "random");
        t.add(below("gfnToHvaLoop, 1 slot (random), ns per lookup", g1, 2.0));
        for (String slots : List.of("1", "512")) {
            Row floor = row("GfnLookupBench.indexFloor", "slots", slots, "pattern", "random");
            t.add(info("gfnToHva per JMH invocation, " + slots + " slot(s) (random) vs the same harness without the lookup (indexFloor)",
                    row("GfnLookupBench.gfnToHva", "slots", slots, "pattern", "random"), floor == null ? Double.NaN : floor.ns()));
        }
        t.add(noAlloc("gfnToHva allocation (512 random, per invocation)", row("GfnLookupBench.gfnToHva", "slots", "512", "pattern", "random")));
        // at KVM's 32764 slots: the targets of one change, the build of all, and lookups against 512
        Row g32k = row("GfnLookupBench.gfnToHvaLoop", "slots", "32764", "pattern", "random");
        t.add(within("gfnToHvaLoop random, 32764 slots vs 512 slots", g32k, g512 == null ? Double.NaN : g512.ns(),
                "GfnLookupBench.gfnToHvaLoop 512", 1.5));
        t.add(noAlloc("gfnToHva allocation (32764 random, per invocation)", row("GfnLookupBench.gfnToHva", "slots", "32764", "pattern", "random")));
        for (String op : List.of("createDelete", "moveAndBack")) {
            Row u = row("MemslotUpdateBench." + op, "slots", "32764", "follower", "none");
            t.add(below("MemslotUpdateBench." + op + " 32764 slots, ns per memslot change", u, 50_000));
            t.add(info("MemslotUpdateBench." + op + " 32764 slots with a GuestMemory following, per change, vs the writer alone",
                    row("MemslotUpdateBench." + op, "slots", "32764", "follower", "guestMemory"), u == null ? Double.NaN : u.ns()));
        }
        Row build = row("MemslotUpdateBench.buildAll", "slots", "32764", "follower", "none");
        t.add(below("MemslotUpdateBench.buildAll 32764 slots one change at a time (single shot)", build, 1e9));
        for (String slots : args.quick() ? List.of("512") : List.of("512", "32764")) { // vm-memory's 32764 alone takes 22 s
            long n = Long.parseLong(slots);
            t.add(info("MemslotUpdateBench.createDelete " + slots + " slots vs vm-memory insert_region/remove_region, per change",
                    row("MemslotUpdateBench.createDelete", "slots", slots, "follower", "none"),
                    refs.ns(References.VM_MEMORY, "insert_remove", null, n)));
            t.add(info("MemslotUpdateBench.moveAndBack " + slots + " slots vs vm-memory remove_region + insert_region, per move",
                    row("MemslotUpdateBench.moveAndBack", "slots", slots, "follower", "none"),
                    refs.ns(References.VM_MEMORY, "move", null, n)));
            t.add(info("MemslotUpdateBench.buildAll " + slots + " slots vs vm-memory insert_region x " + slots,
                    row("MemslotUpdateBench.buildAll", "slots", slots, "follower", "none"),
                    refs.ns(References.VM_MEMORY, "build_all", null, n)));
        }
        // follow_pfn
        Row hit = row("FollowPfnBench.cachedHit");
        t.add(below("FollowPfn cachedHit", hit, 10.0));
        t.add(noAlloc("FollowPfn cachedHit allocation", hit));
        Row cold = row("FollowPfnBench.coldPerPage");
        Row batch = row("PagemapBench.batchPread", "backing", "4k");
        t.add(within("coldPerPage vs PagemapBench.batchPread (4k), per page", cold, batch == null ? Double.NaN : batch.ns(),
                batch == null ? "PagemapBench.batchPread 4k did not run" : null, 1.5));
        Row naive = row("FollowPfnBench.naivePerPage");
        double cb = refs.ns(References.LIMIT, "pagemap_batch", "4k", 0), cp = refs.ns(References.LIMIT, "pagemap_per_page", "4k", 0);
        Target vsNaive = faster("coldPerPage vs naivePerPage (one pread per page)", cold, naive == null ? Double.NaN : naive.ns(),
                "FollowPfnBench.naivePerPage", 20.0);
        if (vsNaive.verdict().equals("MISS") && cp / cb < 20.0) // say when no batching could have met it in this run
            vsNaive = new Target(vsNaive.what(), vsNaive.measured(), vsNaive.goal(),
                    "MISS (C's own batch vs per-page ratio is " + BenchRunner.fmt(cp / cb) + "x in this run)");
        t.add(vsNaive);
        t.add(new Target("bound: C per-page pread / C batch pread (4k), the most any batching can gain over naive",
                Double.isNaN(cb) || Double.isNaN(cp) ? "" : ns(cp) + " / " + ns(cb) + " = " + BenchRunner.fmt(cp / cb) + "x",
                "(context)", Double.isNaN(cb) || Double.isNaN(cp) ? "n/a: C limit unavailable" : "INFO"));
        // prefault, compared by the median single shot (see byMedian)
        for (String backing : List.of("4k", "thp")) {
            Row one = byMedian(row("PrefaultBench.populate1GiB", "backing", backing, "threads", "1"));
            Row all = byMedian(row("PrefaultBench.populate1GiB", "backing", backing, "threads", "all"));
            t.add(faster("prefault 1 GiB " + backing + ": all cores vs 1 thread (median of " + (all == null ? 0 : all.samples)
                    + " single shots)", all, one == null ? Double.NaN : one.ns(), "the 1-thread prefault", 1.0));
        }
        for (String threads : List.of("1", "all")) {
            Row k4 = byMedian(row("PrefaultBench.populate1GiB", "backing", "4k", "threads", threads));
            Row thp = byMedian(row("PrefaultBench.populate1GiB", "backing", "thp", "threads", threads));
            t.add(faster("prefault 1 GiB, " + threads + " thread(s): THP vs 4K (medians)", thp, k4 == null ? Double.NaN : k4.ns(),
                    "the 4K prefault", 1.0));
        }
        // guest memory access (GuestMemory)
        for (String backing : List.of("4k", "thp")) {
            // Loop against loop: the C limit and vm-memory run tight loops over the sequence (best of 5).
            double cRead = refs.ns(References.LIMIT, "read_u64", backing, 512);
            Row loop = byBest(row("AccessBench.readU64Loop", "slots", "512", "backing", backing));
            t.add(within("readU64Loop 512 slots " + backing + " vs C limit loop, best vs best", loop, cRead, "C limit", 2.0));
            t.add(info("readU64 per JMH invocation, 512 slots " + backing + " vs C limit loop",
                    row("AccessBench.readU64", "slots", "512", "backing", backing), cRead));
            Row wr = byBest(row("AccessBench.write4k", "slots", "512", "backing", backing));
            t.add(within("write4k 512 slots " + backing + " vs C memcpy, best vs best", wr,
                    refs.ns(References.LIMIT, "write_4k", backing, 512), "C limit", 1.3));
        }
        for (String backing : List.of("thp", "4k")) {
            Row s512 = row("AccessBench.gpaToSlot", "slots", "512", "backing", backing);
            Row s1 = row("AccessBench.gpaToSlot", "slots", "1", "backing", backing);
            t.add(within("gpa->slot step, 512 slots vs 1 slot (" + backing + " fork)", s512, s1 == null ? Double.NaN : s1.ns(),
                    "AccessBench.gpaToSlot 1", 1.5));
        }
        Row rd4k = byBest(row("AccessBench.readU64Loop", "slots", "512", "backing", "4k"));
        t.add(info("readU64Loop 512 slots 4k vs vm-memory read_obj::<u64> loop (512, 4K pages), best vs best", rd4k,
                refs.ns(References.VM_MEMORY, "read_obj_u64", null, 512)));
        Row wr4k = byBest(row("AccessBench.write4k", "slots", "512", "backing", "4k"));
        t.add(info("write4k 512 slots 4k vs vm-memory write_slice 4 KiB (512), best vs best", wr4k,
                refs.ns(References.VM_MEMORY, "write_slice_4k", null, 512)));
        // the tracked slice and the iovec transfer against their raw forms, measured in the same run
        for (String backing : List.of("4k", "thp")) {
            Row raw = byBest(row("AccessBench.sliceWrite4kRaw", "slots", "512", "backing", backing));
            t.add(info("sliceWrite4k 512 slots " + backing + " vs raw segment copy, best vs best",
                    byBest(row("AccessBench.sliceWrite4k", "slots", "512", "backing", backing)), raw == null ? Double.NaN : raw.ns()));
            Row iovRaw = byBest(row("AccessBench.pwritev3Raw", "slots", "512", "backing", backing));
            t.add(info("pwritev3 512 slots " + backing + " vs pwritev on precomputed iovecs, best vs best",
                    byBest(row("AccessBench.pwritev3", "slots", "512", "backing", backing)), iovRaw == null ? Double.NaN : iovRaw.ns()));
        }
        // context: the Java pagemap path against the same syscalls from C
        for (String backing : List.of("4k", "thp")) {
            t.add(info("PagemapBench.batchPread " + backing + " vs C batch pread", row("PagemapBench.batchPread", "backing", backing),
                    refs.ns(References.LIMIT, "pagemap_batch", backing, 0)));
            t.add(info("PagemapBench.perPagePread " + backing + " vs C per-page pread", row("PagemapBench.perPagePread", "backing", backing),
                    refs.ns(References.LIMIT, "pagemap_per_page", backing, 0)));
        }
        // lazy restore: the handler's fault service against C answering the same faults with nothing but
        // UFFDIO_COPY (best vs best), and restore to complete memory, lazy with prefetch vs eager
        Row lazy = byBest(row("LazyRestoreBench.lazyFaults"));
        t.add(within("lazy restore fault service per 4 KiB page vs C UFFDIO_COPY of 64 KiB blocks, best vs best", lazy,
                refs.ns(References.LIMIT, "uffd_copy_64k", "4k", 0), "C limit", 2.0));
        t.add(info("lazy restore fault service vs C UFFDIO_COPY page by page (4 KiB blocks), best vs best", lazy,
                refs.ns(References.LIMIT, "uffd_copy_4k", "4k", 0)));
        Row eager = byMedian(row("LazyRestoreBench.eager"));
        t.add(within("lazy restore with prefetch, to complete, vs eager restore, per page (medians)",
                byMedian(row("LazyRestoreBench.lazyPrefetchComplete")), eager == null ? Double.NaN : eager.ns(),
                "LazyRestoreBench.eager", 1.5));
        Row eagerGuest = byMedian(row("RestoreToGuestBench.toFirstReport", "restore", "eager"));
        t.add(faster("snapshot to a real guest's first report (64 MiB): lazy vs eager restore (medians)",
                byMedian(row("RestoreToGuestBench.toFirstReport", "restore", "lazy")),
                eagerGuest == null ? Double.NaN : eagerGuest.ns(), "RestoreToGuestBench eager", 2.0));
        // pre-copy: one round per tracker against the same pages sent with no tracking (medians of single shots)
        Row untracked = byMedian(row("PreCopyBench.round", "tracker", "none"));
        for (String tracker : List.of("kvm-log", "kvm-ring", "uffd-wp", "vmm")) {
            Row r = byMedian(row("PreCopyBench.round", "tracker", tracker));
            t.add(info("PreCopyBench.round " + tracker + ": collect, re-arm and send 8 MiB of dirty pages, per 4 KiB"
                    + (r == null ? "" : " (" + BenchRunner.fmt(4096e9 / r.ns() / (1 << 20)) + " MiB/s)")
                    + " vs the same pages sent untracked", r, untracked == null ? Double.NaN : untracked.ns()));
        }
        // a 1 TiB guest with 16 pages written: costs that follow what was touched, not the slot's size
        Row oneSlot = row("GfnLookupBench.gfnToHva", "slots", "1", "pattern", "random");
        t.add(info("SparseGuestBench.gfnToHva: a random gfn of a 1 TiB slot vs one 2 MiB slot", row("SparseGuestBench.gfnToHva"),
                oneSlot == null ? Double.NaN : oneSlot.ns()));
        t.add(below("SparseGuestBench.write16AndCollect: 16 u64 writes and collectDirty of the 1 TiB slot (a dense log: 32 MiB per collect)",
                row("SparseGuestBench.write16AndCollect"), 50_000));
        t.add(below("SparseGuestBench.snapshot: a full snapshot of the 1 TiB guest (16 pages)", row("SparseGuestBench.snapshot"), 20e6));
        Row touched = row("SparseGuestBench.readU64Touched"), fp = row("SparseGuestBench.followPfn");
        t.add(info("SparseGuestBench.readU64Touched: a read of a written page of the 1 TiB guest vs follow_pfn of one (pagemap)",
                touched, fp == null ? Double.NaN : fp.ns()));

        // device-shaped: a virtqueue walk and a dependent chase, each against C (flat table per MiB) and
        // vm-memory on the same chains and nodes, best vs best
        // Like for like: the untracked walk (dirtyLog=off) against vm-memory's GuestMemoryMmap<()> and the plain C
        // walk; the tracked one (dirtyLog=on) against the C walk that marks a bitmap the same way.
        for (String slots : List.of("8", "512")) {
            long n = Long.parseLong(slots);
            t.add(faster("VirtqBench.round " + slots + " slots 4k, dirty log off, vs vm-memory virtq walk (4K pages, no bitmap), ns per chain, best vs best",
                    byBest(row("VirtqBench.round", "vqSlots", slots, "backing", "4k", "dirtyLog", "off")),
                    refs.ns(References.VM_MEMORY, "virtq_walk", "4k", n), "vm-memory", 3.0));
            for (String backing : List.of("4k", "thp")) {
                t.add(within("VirtqBench.round " + slots + " slots " + backing + ", dirty log off, vs C virtq walk (flat table per MiB), ns per chain, best vs best",
                        byBest(row("VirtqBench.round", "vqSlots", slots, "backing", backing, "dirtyLog", "off")),
                        refs.ns(References.LIMIT, "virtq_walk", backing, n), "C limit", 1.5));
                t.add(within("VirtqBench.round " + slots + " slots " + backing + ", dirty log on, vs the C walk recording its writes in a dirty bitmap"
                                + " as GuestMemory does (fence + atomic OR), ns per chain, best vs best",
                        byBest(row("VirtqBench.round", "vqSlots", slots, "backing", backing, "dirtyLog", "on")),
                        refs.ns(References.LIMIT, "virtq_walk_dirty", backing, n), "C limit", 1.5));
            }
        }
        for (String nodes : List.of("1024", "65536")) {
            long n = Long.parseLong(nodes);
            for (String backing : List.of("4k", "thp")) {
                Row c = byBest(row("ChaseBench.chase", "nodes", nodes, "backing", backing));
                t.add(info("ChaseBench.chase " + nodes + " nodes " + backing + " vs C chase_gpa (flat table per MiB), per access, best vs best",
                        c, refs.ns(References.LIMIT, "chase_gpa", backing, n)));
                t.add(info("ChaseBench.chase " + nodes + " nodes " + backing + " vs C chase_hva (the hardware's dependent load), per access, best vs best",
                        c, refs.ns(References.LIMIT, "chase_hva", backing, n)));
            }
            t.add(info("ChaseBench.chase " + nodes + " nodes 4k vs vm-memory read_obj::<u64> chase, per access, best vs best",
                    byBest(row("ChaseBench.chase", "nodes", nodes, "backing", "4k")), refs.ns(References.VM_MEMORY, "chase_gpa", "4k", n)));
        }
        // pinning: MemslotLock's lock + unlock against C making the same system calls, as GiB/s pinned
        for (String backing : List.of("4k", "thp")) {
            Row l = byBest(row("LockBench.lockUnlock256MiB", "backing", backing));
            double c = refs.ns(References.LIMIT, "lock_unlock", backing, LockBench.SIZE >> 20);
            double gib = LockBench.SIZE / (double) (1L << 30);
            t.add(info("LockBench.lockUnlock256MiB " + backing + " vs C making the same calls (maps, MADV_POPULATE_WRITE, io_uring buffer"
                            + " registration, pagemap pread, unregister), per lock + unlock, best vs best"
                            + (l == null || Double.isNaN(c) ? "" : " (" + BenchRunner.fmt(gib / (l.ns() / 1e9)) + " vs "
                            + BenchRunner.fmt(gib / (c / 1e9)) + " GiB/s)"), l, c));
        }
        // dirty tracking at scale: collect-and-rearm of 1% of a 4 GiB guest, per tracker, against the C loop of
        // the same calls (the dirty ring has no C loop: its figure is context beside the bitmap's)
        long dataMiB = DirtyScaleBench.SIZE >> 20;
        for (String[] tr : new String[][] {{"kvm-log", "dirty_kvm_log"}, {"kvm-log", "dirty_kvm_clear"}, {"kvm-ring", "dirty_kvm_log"},
                {"uffd-wp", "dirty_uffd_wp"}, {"vmm", "dirty_kvm_log"}}) {
            Row r = byBest(row("DirtyScaleBench.round", "tracker", tr[0]));
            double c = refs.ns(References.LIMIT, tr[1], "4k", dataMiB);
            t.add(info("DirtyScaleBench.round " + tr[0] + ": collect-and-rearm, 4 GiB guest with 1% dirty, per dirty page"
                    + (r == null ? "" : " (" + BenchRunner.fmt(1e3 / r.ns()) + " M pages/s")
                    + (r == null || Double.isNaN(c) ? (r == null ? "" : ")") : " vs " + BenchRunner.fmt(1e3 / c) + " M pages/s)")
                    + " vs C " + tr[1] + ", best vs best", r, c));
        }
        return t;
    }

    private static String ns(double v) {
        return BenchRunner.fmt(v) + " ns";
    }

    private static String missing(String bench) {
        String cls = bench.substring(0, bench.indexOf('.'));
        return "n/a: " + (NEEDS.containsKey(cls) && !exists(cls) ? cls + " not built (API not in main)" : bench + " did not run");
    }

    private static boolean exists(String cls) {
        try {
            Class.forName("io.guestmem.bench." + cls);
            return true;
        } catch (ClassNotFoundException e) {
            return false;
        }
    }

    /** {@code r} must be at least {@code factor} times faster than {@code otherNs}. */
    private Target faster(String what, Row r, double otherNs, String otherName, double factor) {
        String goal = factor == 1.0 ? "faster" : ">= " + BenchRunner.fmt(factor) + "x faster";
        if (r == null) return new Target(what, "", goal, missing(nameFor(what, r)));
        if (Double.isNaN(otherNs)) return new Target(what, show(r), goal, "n/a: " + otherName + " unavailable");
        double ratio = otherNs / r.ns();
        return new Target(what, show(r) + " vs " + showNs(otherNs, r) + " = " + BenchRunner.fmt(ratio) + "x faster", goal,
                ratio >= factor && ratio > 1.0 ? "PASS" : "MISS");
    }

    /** {@code r} must be at most {@code factor} times {@code otherNs}. */
    private Target within(String what, Row r, double otherNs, String otherName, double factor) {
        String goal = "<= " + BenchRunner.fmt(factor) + "x";
        if (r == null) return new Target(what, "", goal, missing(nameFor(what, r)));
        if (Double.isNaN(otherNs)) return new Target(what, show(r), goal, "n/a: " + otherName + " unavailable");
        double ratio = r.ns() / otherNs;
        return new Target(what, show(r) + " vs " + ns(otherNs) + " = " + BenchRunner.fmt(ratio) + "x", goal,
                ratio <= factor ? "PASS" : "MISS");
    }

    private Target below(String what, Row r, double limitNs) {
        String goal = "< " + BenchRunner.fmt(limitNs) + " ns";
        if (r == null) return new Target(what, "", goal, missing(nameFor(what, r)));
        return new Target(what, show(r), goal, r.ns() < limitNs ? "PASS" : "MISS");
    }

    private Target noAlloc(String what, Row r) {
        if (r == null) return new Target(what, "", "0 B/op", missing(nameFor(what, r)));
        if (Double.isNaN(r.bytesPerOp)) return new Target(what, "", "0 B/op", "n/a: no gc profiler result");
        // The profiler's own sampling shows as ~1e-4 B/op; one allocation on the path would be >= 16 B/op.
        return new Target(what, BenchRunner.fmt(r.bytesPerOp) + " B/op", "0 B/op", r.bytesPerOp < 0.1 ? "PASS" : "MISS");
    }

    private Target info(String what, Row r, double otherNs) {
        if (r == null) return new Target(what, "", "(context)", missing(nameFor(what, r)));
        if (Double.isNaN(otherNs)) return new Target(what, show(r), "(context)", "n/a: reference unavailable");
        return new Target(what, show(r) + " vs " + ns(otherNs) + " = " + BenchRunner.fmt(r.ns() / otherNs) + "x the reference's time",
                "(context)", "INFO");
    }

    /** The bench a target is about, for the n/a text: the first word that names a bench class. */
    private static String nameFor(String what, Row r) {
        for (String w : what.split("[\\s,]+")) {
            if (w.contains("Bench.")) return w;
        }
        if (what.startsWith("gfnToHva")) return "GfnLookupBench.gfnToHva";
        if (what.startsWith("FollowPfn") || what.startsWith("coldPerPage")) return "FollowPfnBench.coldPerPage";
        if (what.startsWith("prefault")) return "PrefaultBench.populate1GiB";
        if (what.startsWith("readU64") || what.startsWith("write4k") || what.startsWith("gpa->slot")) return "AccessBench.readU64";
        return "?.?";
    }

    private static String show(Row r) {
        return r.unit.equals("s/op") ? BenchRunner.fmt(r.score) + " s" : ns(r.ns());
    }

    private static String showNs(double otherNs, Row like) {
        return like.unit.equals("s/op") ? BenchRunner.fmt(otherNs / 1e9) + " s" : ns(otherNs);
    }
}
