package io.guestmem.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Runs a {@code main} of this module's test classpath in a child JVM, optionally behind a command prefix
 * ({@code setpriv ...}, {@code prlimit ...}): for what must not happen in the test JVM (a lowered address-space
 * limit, dropped capabilities, another uid, a possible crash). A crash of the child is an exit status, so it
 * fails a test instead of killing the run.
 */
final class ChildJvm {
    private ChildJvm() {}

    /** The child's exit status, its standard output and its standard error. */
    record Result(int exit, String stdout, String err) {
        /** Everything it printed: standard output, then standard error. */
        String output() {
            return stdout + err;
        }

        List<String> lines(String prefix) {
            return output().lines().filter(l -> l.startsWith(prefix)).toList();
        }

        /** A status above 128 is death by a signal (134 SIGABRT: the JVM's crash handler; 139 SIGSEGV). */
        boolean crashed() {
            return exit > 128;
        }
    }

    private static Path readableCopy;

    /** The test classpath (surefire runs tests from a manifest-only jar and names the real one here). */
    static List<String> classpath() {
        String cp = System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
        return List.of(cp.split(java.io.File.pathSeparator));
    }

    /**
     * The classpath copied to a world-readable temp dir, for a child running as another user (the local Maven
     * repository is usually root's alone). Copied once per JVM, deleted at exit.
     */
    static synchronized List<String> worldReadableClasspath() {
        try {
            if (readableCopy == null) {
                Path dir = Files.createTempDirectory("guestmem-cp");
                Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
                int i = 0;
                for (String e : classpath()) {
                    Path src = Path.of(e);
                    if (!Files.exists(src)) continue;
                    Path dst = dir.resolve(i++ + "-" + src.getFileName());
                    copyTree(src, dst);
                }
                readableCopy = dir;
                Runtime.getRuntime().addShutdownHook(new Thread(() -> deleteTree(dir)));
            }
            try (Stream<Path> s = Files.list(readableCopy)) {
                return s.sorted(Comparator.comparingInt(p -> Integer.parseInt(p.getFileName().toString().split("-", 2)[0])))
                        .map(Path::toString).toList();
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static Result run(List<String> prefix, List<String> classpath, Class<?> main, List<String> args, int timeoutSeconds) {
        List<String> cmd = new ArrayList<>(prefix);
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        // the child runs on the class path, like the tests themselves: its code is in the unnamed module
        Path errFile = null, crashFile = null;
        try {
            errFile = Files.createTempFile("guestmem-child", ".err");
            // A JVM crash of the child is a finding, not noise: its report goes where the result can quote it.
            crashFile = Files.createTempFile("guestmem-child", ".hs_err");
            Files.delete(crashFile);
            cmd.addAll(List.of("--enable-native-access=ALL-UNNAMED", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
                    "-XX:-UsePerfData", "-Xmx256m", "-XX:ErrorFile=" + crashFile,
                    "-cp", String.join(java.io.File.pathSeparator, classpath), main.getName()));
            cmd.addAll(args);
            Process p = new ProcessBuilder(cmd).redirectError(errFile.toFile()).start();
            byte[] out = p.getInputStream().readAllBytes();
            if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new AssertionError("child " + main.getSimpleName() + " did not finish in " + timeoutSeconds + " s: " + new String(out));
            }
            String err = Files.readString(errFile);
            if (Files.exists(crashFile)) err += "\n--- the child JVM crashed; the head of its error report:\n"
                    + String.join("\n", Files.readAllLines(crashFile).stream().limit(120).toList());
            return new Result(p.exitValue(), new String(out), err);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        } finally {
            if (errFile != null) errFile.toFile().delete();
            if (crashFile != null) crashFile.toFile().delete();
        }
    }

    static Result run(List<String> prefix, Class<?> main, String... args) {
        return run(prefix, classpath(), main, List.of(args), 120);
    }

    private static void copyTree(Path src, Path dst) throws IOException {
        try (Stream<Path> s = Files.walk(src)) {
            for (Path x : s.toList()) {
                Path t = dst.resolve(src.relativize(x).toString());
                if (Files.isDirectory(x)) Files.createDirectories(t);
                else Files.copy(x, t);
                Files.setPosixFilePermissions(t, PosixFilePermissions.fromString(Files.isDirectory(x) ? "rwxr-xr-x" : "rw-r--r--"));
            }
        }
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(x -> x.toFile().delete());
        } catch (IOException ignored) {
            // best effort at exit
        }
    }
}
