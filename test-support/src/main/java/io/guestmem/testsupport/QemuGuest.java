package io.guestmem.testsupport;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * A Linux guest under QEMU (x86-64, TCG: this host's KVM runs no normal Linux guest) with one
 * vhost-user-blk-pci device on a back-end's socket, its serial console in a file, and a QMP socket.
 * The guest is what {@code runner/qemu-x86/prepare} built: Debian's 6.1 kernel and an initramfs whose
 * {@code /init} prints {@code GUESTMEM ...} lines.
 */
public final class QemuGuest implements AutoCloseable {
    /**
     * The RAM the guest gets: a shared memfd, as a vhost-user back-end needs (it maps the fds QEMU sends); room
     * for two DIMMs more (QMP object-add + device_add pc-dimm: memory hot-plug while the device runs).
     */
    public static final String RAM = "256M";

    /** What prepare made: the kernel and initramfs, or why there are none (QEMU could not be installed). */
    public record Boot(Path dir, String unavailable) {
        public Path kernel() {
            return dir.resolve("vmlinuz");
        }

        public Path initrd() {
            return dir.resolve("initrd.img");
        }
    }

    /**
     * Runs {@code runner/qemu-x86/prepare} for the guest whose /init is {@code runner/qemu-x86/<init>} of the
     * repository at or above {@code from}; the script's log goes to {@code work/prepare.log} and to stdout.
     */
    public static Boot prepare(Path from, String init, Path work) throws IOException, InterruptedException {
        Path root = repositoryRoot(from);
        Path initFile = root.resolve("runner/qemu-x86").resolve(init);
        Path log = work.resolve("prepare.log");
        Process p = new ProcessBuilder(root.resolve("runner/qemu-x86/prepare").toString(), initFile.toString())
                .redirectError(log.toFile()).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        if (!p.waitFor(15, TimeUnit.MINUTES)) {
            p.destroyForcibly();
            throw new IllegalStateException("prepare did not finish in 15 minutes (log: " + log + ")");
        }
        String err = Files.readString(log);
        System.out.print(err.isEmpty() ? "" : err.indent(2));
        if (p.exitValue() != 0) {
            if (err.contains("package install failed") || err.contains("apt-get download")) return new Boot(null, err.strip());
            throw new IllegalStateException("prepare failed (exit " + p.exitValue() + "): " + err.strip());
        }
        return new Boot(Path.of(out), null);
    }

    private static Path repositoryRoot(Path from) {
        for (Path d = from.toAbsolutePath(); d != null; d = d.getParent())
            if (Files.isRegularFile(d.resolve("runner/qemu-x86/prepare"))) return d;
        throw new IllegalStateException("runner/qemu-x86/prepare not found at or above " + from);
    }

    private final Process process;
    private final Path console, qmpPath, stderr;
    private final String name;

    private QemuGuest(String name, Process process, Path console, Path qmp, Path stderr) {
        this.name = name;
        this.process = process;
        this.console = console;
        this.qmpPath = qmp;
        this.stderr = stderr;
    }

    /**
     * Starts QEMU with the device on {@code socket}; {@code mode} goes to the guest's /init on the kernel command
     * line; {@code incoming}, when not null, is the migration stream to start from (QEMU's {@code -incoming}).
     */
    public static QemuGuest start(String name, Boot boot, Path socket, Path work, String mode, String incoming) throws IOException {
        Path console = work.resolve(name + "-console.log"), qmp = work.resolve(name + ".qmp"), err = work.resolve(name + "-qemu.log");
        List<String> cmd = new ArrayList<>(List.of("qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", "1",
                "-m", RAM + ",slots=2,maxmem=1G", "-object", "memory-backend-memfd,id=mem,size=" + RAM + ",share=on", "-numa", "node,memdev=mem",
                "-chardev", "socket,id=c0,path=" + socket, "-device", "vhost-user-blk-pci,chardev=c0,num-queues=1",
                "-kernel", boot.kernel().toString(), "-initrd", boot.initrd().toString(),
                "-append", "console=ttyS0 panic=-1 quiet guestmem.mode=" + mode,
                "-display", "none", "-nic", "none", "-monitor", "none", "-no-reboot",
                "-serial", "file:" + console, "-qmp", "unix:" + qmp + ",server=on,wait=off"));
        if (incoming != null) cmd.addAll(List.of("-incoming", incoming));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(err.toFile()).start();
        return new QemuGuest(name, p, console, qmp, err);
    }

    /** The console's GUESTMEM lines so far. */
    public List<String> lines() {
        try {
            if (!Files.exists(console)) return List.of();
            return Files.readAllLines(console, StandardCharsets.ISO_8859_1).stream()
                    .map(String::strip).filter(l -> l.startsWith("GUESTMEM ")).toList();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Waits until the GUESTMEM lines satisfy {@code done}; fails with the console and QEMU's output past the timeout. */
    public List<String> await(Predicate<List<String>> done, Duration timeout, String what) throws InterruptedException {
        long end = System.nanoTime() + timeout.toNanos();
        while (true) {
            boolean exited = !process.isAlive(); // read before the lines: an exited QEMU has written its last ones
            List<String> l = lines();
            if (done.test(l)) return l;
            if (exited || System.nanoTime() > end)
                throw new AssertionError(name + ": " + what + " did not happen within " + timeout.toSeconds() + " s"
                        + (process.isAlive() ? "" : " (QEMU exited " + process.exitValue() + ")") + "\n" + report());
            Thread.sleep(100);
        }
    }

    /** Waits for QEMU to exit (the guest powers off); its exit code. */
    public int awaitExit(Duration timeout) throws InterruptedException {
        if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS))
            throw new AssertionError(name + ": QEMU still runs after " + timeout.toSeconds() + " s\n" + report());
        return process.exitValue();
    }

    /** The tail of the console and QEMU's own output, for a failure message. */
    public String report() {
        StringBuilder b = new StringBuilder();
        for (Path f : List.of(console, stderr)) {
            try {
                List<String> l = Files.exists(f) ? Files.readAllLines(f, StandardCharsets.ISO_8859_1) : List.of();
                b.append("--- ").append(f.getFileName()).append(" (last 25 lines)\n");
                l.subList(Math.max(0, l.size() - 25), l.size()).forEach(x -> b.append(x).append('\n'));
            } catch (IOException e) {
                b.append(e).append('\n');
            }
        }
        return b.toString();
    }

    /** QEMU's QMP socket (QemuGuest#start asks for one; it exists once QEMU is up). */
    public Path qmpSocket() {
        return qmpPath;
    }

    @Override
    public void close() {
        process.destroyForcibly();
        try {
            process.waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
