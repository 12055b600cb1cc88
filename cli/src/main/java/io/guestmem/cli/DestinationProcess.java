package io.guestmem.cli;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The second process of {@code demo --migrate}: this same command, {@code migrate-destination SOCKET}, in a new
 * JVM started the way this one runs (on the module path with native access granted to guestmem's bridge, as
 * {@code ./guestmem} starts it, or on the class path with native access for the unnamed module). Its stdout (a
 * {@link MigrateDestinationCommand.Result}) and stderr are drained as it runs. A watchdog kills it past its
 * time, which also ends a migration blocked on its socket; {@link #close} kills it if it is still alive and
 * reaps it, so no process outlives the demo.
 */
final class DestinationProcess implements AutoCloseable {
    private final Process process;
    private final CompletableFuture<String> out, err;
    private final Thread watchdog;

    private DestinationProcess(Process process, Duration limit) {
        this.process = process;
        out = drain(process.getInputStream());
        err = drain(process.getErrorStream());
        watchdog = Thread.ofVirtual().name("guestmem-destination-watchdog").start(() -> {
            try {
                if (!process.waitFor(limit.toMillis(), TimeUnit.MILLISECONDS)) process.destroyForcibly();
            } catch (InterruptedException e) {
                // closed first
            }
        });
    }

    /** Starts the destination for the source listening at {@code socket}; it is killed after {@code limit}. */
    static DestinationProcess start(Path socket, Duration limit) {
        try {
            return new DestinationProcess(new ProcessBuilder(command(socket)).start(), limit);
        } catch (IOException e) {
            throw new MigrateDemoException("could not start the destination process: " + e.getMessage(), e);
        }
    }

    /** This JVM's java, on this JVM's module path or class path, running {@code migrate-destination socket}. */
    static List<String> command(Path socket) {
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        String modulePath = System.getProperty("jdk.module.path");
        if (DestinationProcess.class.getModule().isNamed() && modulePath != null) {
            cmd.addAll(List.of("--enable-native-access=io.guestmem.bridge", "--module-path", modulePath,
                    "--module", DestinationProcess.class.getModule().getName() + "/" + Main.class.getName()));
        } else {
            cmd.addAll(List.of("--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                    Main.class.getName()));
        }
        cmd.addAll(List.of("migrate-destination", socket.toString()));
        return cmd;
    }

    long pid() {
        return process.pid();
    }

    /**
     * The destination's connection to {@code server}, waiting at most {@code timeout}; fails at once if the
     * process exits first.
     */
    SocketChannel accept(ServerSocketChannel server, Duration timeout) throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        server.configureBlocking(false);
        while (true) {
            SocketChannel ch = server.accept();
            if (ch != null) {
                ch.configureBlocking(true);
                return ch;
            }
            if (!process.isAlive()) throw failed("exited with status " + process.exitValue() + " before it connected");
            if (System.nanoTime() > deadline) throw failed("did not connect within " + timeout.toSeconds() + " s");
            try {
                Thread.sleep(5);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new MigrateDemoException("interrupted while waiting for the destination process", e);
            }
        }
    }

    /** Waits for the process to end (the watchdog bounds it) and parses its result; a failure says what it printed. */
    MigrateDestinationCommand.Result result() {
        int status;
        try {
            status = process.waitFor();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MigrateDemoException("interrupted while waiting for the destination process", e);
        }
        if (status != 0) throw failed("exited with status " + status);
        String text = output(out);
        try {
            return Json.MAPPER.readValue(text, MigrateDestinationCommand.Result.class);
        } catch (IOException e) {
            throw failed("printed no result (" + e.getMessage() + "): " + text.strip());
        }
    }

    /** What the process said on stderr (after it ended), for an error message. */
    private MigrateDemoException failed(String what) {
        String why = process.isAlive() ? "" : output(err).strip();
        return new MigrateDemoException("the destination process (pid " + process.pid() + ") " + what
                + (why.isEmpty() ? "" : ": " + lastError(why)));
    }

    /** The command's own error line ("guestmem: ..."), or the last line the process printed. */
    private static String lastError(String stderr) {
        List<String> lines = stderr.lines().toList();
        return lines.stream().filter(l -> l.startsWith("guestmem: ")).map(l -> l.substring("guestmem: ".length()))
                .reduce((a, b) -> b).orElse(lines.getLast());
    }

    private static String output(CompletableFuture<String> f) {
        try {
            return f.get(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return "";
        } catch (ExecutionException | TimeoutException e) {
            return "(output unreadable: " + e + ")";
        }
    }

    private static CompletableFuture<String> drain(InputStream in) {
        CompletableFuture<String> f = new CompletableFuture<>();
        Thread.ofVirtual().name("guestmem-destination-output").start(() -> {
            try (in) {
                f.complete(new String(in.readAllBytes(), StandardCharsets.UTF_8));
            } catch (IOException | UncheckedIOException e) {
                f.completeExceptionally(e);
            }
        });
        return f;
    }

    /** Kills the process if it still runs and reaps it; stops the watchdog. */
    @Override
    public void close() {
        try {
            if (process.isAlive()) {
                process.destroyForcibly();
                if (!process.waitFor(10, TimeUnit.SECONDS))
                    throw new MigrateDemoException("the destination process (pid " + process.pid() + ") did not exit after SIGKILL");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            watchdog.interrupt();
        }
    }
}
