package io.guestmem.bench;

import io.guestmem.testsupport.QemuGuest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * {@code ./guestmem bench --vhost-user-blk}: a real Linux guest's O_DIRECT dd through a vhost-user-blk device,
 * served by guestmem's back-end ({@code ./guestmem vhost-user-blk}) and by QEMU's own C back-end
 * ({@code qemu-storage-daemon}) in turn, on the same image, the same guest and the same QEMU, in one run.
 *
 * <p>Per run: the guest's throughput (bytes over the /proc/uptime interval around its dd) and the back-end
 * process's CPU time (utime + stime of all its threads, from /proc/PID/stat, sampled while the guest pauses
 * before and after each dd), per request for 4 KiB requests (one dd block is one request with O_DIRECT). The
 * guest runs under TCG, so its throughput is bounded by the emulated CPU; the back-end's CPU per request is the
 * figure that tells the two back-ends apart. Writes {@code bench/results/vhost-user-blk.md}.
 */
final class VhostUserBlkBench {
    private static final long IMAGE = 64L << 20;

    /** One timed dd of the guest, for one back-end. */
    record Run(String backend, String name, String op, long blockBytes, long count, double seconds, double cpuSeconds,
               double serverThreadCpuSeconds) {
        double mibPerSecond() {
            return blockBytes * count / seconds / (1 << 20);
        }

        double cpuMicrosPerBlock() {
            return cpuSeconds * 1e6 / count;
        }

        double serverThreadMicrosPerBlock() {
            return serverThreadCpuSeconds * 1e6 / count;
        }
    }

    private final Path root, work;
    private final long ticksPerSecond;

    private VhostUserBlkBench(Path root, Path work, long ticksPerSecond) {
        this.root = root;
        this.work = work;
        this.ticksPerSecond = ticksPerSecond;
    }

    /** Runs both back-ends and writes the report; returns its markdown, or why it could not run. */
    static String run(Path root) throws Exception {
        String arch = System.getProperty("os.arch");
        if (!arch.equals("amd64") && !arch.equals("x86_64")) return "vhost-user-blk bench: not run (the guest is x86-64; this is " + arch + ")";
        Path work = Files.createTempDirectory("guestmem-vhost-bench-");
        try {
            QemuGuest.Boot boot = QemuGuest.prepare(root, "vhost-user-blk-init", work);
            if (boot.unavailable() != null) return "vhost-user-blk bench: not run (" + boot.unavailable() + ")";
            VhostUserBlkBench b = new VhostUserBlkBench(root, work, clockTicks());
            List<Run> runs = new ArrayList<>();
            runs.addAll(b.runBackend(boot, "guestmem", List.of(root.resolve("guestmem").toString(), "vhost-user-blk",
                    "--socket", work.resolve("guestmem.sock").toString(), "--image", work.resolve("guestmem.img").toString())));
            runs.addAll(b.runBackend(boot, "qemu-storage-daemon", List.of("qemu-storage-daemon",
                    "--blockdev", "driver=file,node-name=disk,filename=" + work.resolve("qemu-storage-daemon.img"),
                    "--export", "type=vhost-user-blk,id=export,node-name=disk,writable=on,addr.type=unix,addr.path="
                            + work.resolve("qemu-storage-daemon.sock"))));
            String md = markdown(runs);
            Files.writeString(root.resolve("bench/results/vhost-user-blk.md"), md);
            return md;
        } finally {
            try (var s = Files.walk(work)) {
                s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    private List<Run> runBackend(QemuGuest.Boot boot, String name, List<String> command) throws Exception {
        Path img = work.resolve(name + ".img"), sock = work.resolve(name + ".sock");
        try (var ch = java.nio.channels.FileChannel.open(img, java.nio.file.StandardOpenOption.CREATE_NEW, java.nio.file.StandardOpenOption.WRITE)) {
            ch.truncate(IMAGE);
            ch.write(java.nio.ByteBuffer.wrap(new byte[1]), IMAGE - 1);
        }
        System.out.println("vhost-user-blk bench: " + name);
        Process backend = new ProcessBuilder(command).directory(root.toFile()).redirectErrorStream(true)
                .redirectOutput(work.resolve(name + "-backend.log").toFile()).start();
        List<Run> runs = new ArrayList<>();
        try {
            long end = System.nanoTime() + Duration.ofMinutes(5).toNanos(); // ./guestmem builds the command first when stale
            while (!Files.exists(sock)) {
                if (!backend.isAlive() || System.nanoTime() > end)
                    throw new IllegalStateException(name + " did not listen on " + sock + ": " + Files.readString(work.resolve(name + "-backend.log")));
                Thread.sleep(100);
            }
            try (QemuGuest guest = QemuGuest.start(name, boot, sock, work, "bench", null)) {
                Map<String, double[]> cpuAtBegin = new LinkedHashMap<>();
                int seen = 0;
                boolean done = false;
                while (!done) {
                    final int s = seen;
                    List<String> l = guest.await(x -> x.size() > s, Duration.ofMinutes(5), "the next bench line");
                    for (; seen < l.size(); seen++) {
                        String line = l.get(seen);
                        if (line.contains(" BAD")) throw new IllegalStateException(name + ": " + line + "\n" + guest.report());
                        String[] f = line.split(" ");
                        if (f.length < 3 || !f[1].equals("BENCH")) continue;
                        switch (f[2]) {
                            case "begin" -> cpuAtBegin.put(f[3], cpuSeconds(backend.pid()));
                            case "end" -> {
                                double[] now = cpuSeconds(backend.pid()), then = cpuAtBegin.get(f[3]);
                                long bs = f[5].equals("4k") ? 4096 : 1 << 20;
                                if (!f[3].equals("warmup"))
                                    runs.add(new Run(name, f[3], f[4], bs, Long.parseLong(f[6]), Double.parseDouble(f[8]) - Double.parseDouble(f[7]),
                                            now[0] - then[0], now[1] - then[1]));
                            }
                            case "done" -> done = true;
                            default -> { }
                        }
                    }
                }
                guest.awaitExit(Duration.ofSeconds(60));
            }
        } finally {
            backend.destroy();
            if (!backend.waitFor(10, TimeUnit.SECONDS)) backend.destroyForcibly();
        }
        return runs;
    }

    /**
     * utime + stime in seconds: of all the process's threads, and of its threads that serve the device (the
     * JVM's {@code vhost-user-blk} thread; for qemu-storage-daemon, whose I/O runs in its main loop, all of them).
     */
    private double[] cpuSeconds(long pid) throws IOException {
        double all = ticks(Path.of("/proc", Long.toString(pid), "stat")), serving = 0;
        try (var tasks = Files.list(Path.of("/proc", Long.toString(pid), "task"))) {
            for (Path t : tasks.toList()) {
                String comm = Files.readString(t.resolve("comm")).strip();
                if (comm.startsWith("vhost-user")) serving += ticks(t.resolve("stat"));
            }
        } catch (IOException gone) {
            // a thread that ended between the listing and the read
        }
        return new double[] {all / ticksPerSecond, (serving == 0 ? all : serving) / ticksPerSecond};
    }

    private static double ticks(Path stat) throws IOException {
        String s = Files.readString(stat);
        String[] f = s.substring(s.lastIndexOf(')') + 2).split(" ");
        return Long.parseLong(f[11]) + Long.parseLong(f[12]); // fields 14 and 15: utime, stime
    }

    private static long clockTicks() throws IOException, InterruptedException {
        Process p = new ProcessBuilder("getconf", "CLK_TCK").start();
        String out = new String(p.getInputStream().readAllBytes()).trim();
        p.waitFor();
        return Long.parseLong(out);
    }

    static String markdown(List<Run> runs) {
        StringBuilder b = new StringBuilder();
        b.append("# vhost-user-blk: guestmem's back-end against qemu-storage-daemon (").append(LocalDate.now()).append(")\n\n");
        b.append("A Linux 6.1 guest under QEMU 7.2 (TCG, 1 vCPU, 256 MiB) runs O_DIRECT dd on /dev/vda; the back-ends serve a 64 MiB raw\n");
        b.append("image on the host's page cache. Throughput is the guest's (bounded by TCG); CPU is the back-end process's (all\n");
        b.append("threads, /proc/PID/stat), per dd block: one request for 4 KiB blocks.\n\n");
        b.append("| run | guestmem MiB/s | qemu-storage-daemon MiB/s | guestmem CPU µs/block (serving thread) | qemu-storage-daemon CPU µs/block | CPU ratio (guestmem process / C) |\n");
        b.append("|---|---:|---:|---:|---:|---:|\n");
        Map<String, Run> g = new LinkedHashMap<>(), q = new LinkedHashMap<>();
        for (Run r : runs) (r.backend().equals("guestmem") ? g : q).put(r.name(), r);
        for (String name : g.keySet()) {
            Run a = g.get(name), c = q.get(name);
            b.append(String.format(Locale.ROOT, "| %s | %.1f | %s | %.1f (%.1f) | %s | %s |%n", name, a.mibPerSecond(),
                    c == null ? "n/a" : String.format(Locale.ROOT, "%.1f", c.mibPerSecond()), a.cpuMicrosPerBlock(), a.serverThreadMicrosPerBlock(),
                    c == null ? "n/a" : String.format(Locale.ROOT, "%.1f", c.cpuMicrosPerBlock()),
                    c == null || c.cpuSeconds() == 0 ? "n/a" : String.format(Locale.ROOT, "%.2f", a.cpuSeconds() / c.cpuSeconds())));
        }
        b.append("\nCPU times have the kernel's tick resolution (10 ms at 100 Hz): the 4 KiB runs (8192 requests each, after 16384 of warm-up) carry the figure.\n");
        return b.toString();
    }
}
