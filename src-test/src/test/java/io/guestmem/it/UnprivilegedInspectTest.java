package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.guestmem.procfs.Maps;
import io.guestmem.procfs.MapsEntry;
import io.guestmem.procfs.Pagemap;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code inspect} run as uid 65534 without capabilities (a child JVM under setpriv): pfns of a process it
 * may read come back hidden (null, never 0, pfnVisible false), and a process it may not read is refused
 * in one line with exit 1.
 */
@org.junit.jupiter.api.extension.ExtendWith(LeakGuard.class)
class UnprivilegedInspectTest {
    static final String[] SETPRIV = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"};
    static Path dir;
    static String classpath;

    record Result(int code, String out, String err) {}

    @BeforeAll
    static void copyClasspath() throws Exception {
        Assumptions.assumeTrue(Posix.geteuid() == 0, "needs root to start children as uid 65534 (setpriv)");
        Assumptions.assumeTrue(Files.isExecutable(Path.of(SETPRIV[0])), "setpriv (util-linux) is not installed");
        // uid 65534 must be able to read the classes: copy what the command loads to a world-readable dir.
        dir = Files.createTempDirectory("guestmem-inspect");
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
        List<String> cp = new ArrayList<>();
        int i = 0;
        for (String c : List.of("io.guestmem.cli.Main", "io.guestmem.procfs.Pagemap", "picocli.CommandLine",
                "com.fasterxml.jackson.databind.ObjectMapper", "com.fasterxml.jackson.core.JsonGenerator",
                "com.fasterxml.jackson.annotation.JsonInclude", "me.tongfei.progressbar.ProgressBar",
                "org.jline.terminal.Terminal")) {
            Path src = Path.of(Class.forName(c).getProtectionDomain().getCodeSource().getLocation().toURI());
            Path dst = dir.resolve("cp" + i++ + (Files.isDirectory(src) ? "" : ".jar"));
            copyTree(src, dst);
            cp.add(dst.toString());
        }
        classpath = String.join(":", cp);
    }

    @AfterAll
    static void cleanUp() throws IOException {
        if (dir == null) return;
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(x -> x.toFile().delete());
        }
    }

    static Result inspectAsNobody(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(SETPRIV));
        cmd.addAll(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-cp", classpath, "io.guestmem.cli.Main", "inspect"));
        cmd.addAll(List.of(args));
        Path err = Files.createTempFile("inspect-err", ".txt");
        try {
            Process p = new ProcessBuilder(cmd).redirectError(err.toFile()).start();
            String out = new String(p.getInputStream().readAllBytes());
            assertTrue(p.waitFor(60, TimeUnit.SECONDS));
            return new Result(p.exitValue(), out, Files.readString(err));
        } finally {
            Files.delete(err);
        }
    }

    @Test
    void pfnsOfAReadableProcessAreHidden() throws Exception {
        List<String> cmd = new ArrayList<>(List.of(SETPRIV));
        cmd.addAll(List.of("sleep", "30"));
        Process sleeper = new ProcessBuilder(cmd).start();
        try {
            int pid = (int) sleeper.pid();
            MapsEntry stack = null;
            for (int tries = 0; tries < 100; tries++) {
                for (MapsEntry e : Maps.read(pid)) if (e.name().equals("[stack]") && Maps.read(pid).stream().anyMatch(m -> m.name().contains("sleep"))) stack = e;
                if (stack != null) break;
                Thread.sleep(20);
            }
            assertNotNull(stack);
            Result r = inspectAsNobody("--pid", Integer.toString(pid), "--pages", "--json", "--range",
                    Fmt.hex(stack.start()) + "-" + Fmt.hex(stack.end()));
            assertEquals(0, r.code(), r.err());
            JsonNode doc = new ObjectMapper().readTree(r.out());
            assertFalse(doc.get("pfnVisible").asBoolean(), "uid 65534 without CAP_SYS_ADMIN sees no pfns");
            int present = 0;
            for (JsonNode p : doc.get("pages")) {
                assertTrue(p.get("pfn").isNull(), "a hidden pfn is null, never 0: " + p);
                assertTrue(p.get("refcounted").isNull(), p.toString());
                assertTrue(p.get("flags").isNull(), p.toString());
                if (p.get("present").asBoolean()) present++;
            }
            assertTrue(present > 0, "sleep's stack has present pages: " + doc);
            // The present bits agree with root's view of the same pages (pfns aside).
            try (Pagemap pm = Pagemap.open(pid)) {
                int rootPresent = 0;
                for (long raw : pm.read(stack.start(), (int) (stack.size() / Posix.PAGE_SIZE)))
                    if (raw < 0) rootPresent++;
                assertEquals(rootPresent, present);
            }
        } finally {
            sleeper.destroyForcibly();
            sleeper.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void aProcessItMayNotReadIsRefusedInOneLine() throws Exception {
        Result r = inspectAsNobody("--pid", Long.toString(ProcessHandle.current().pid()));
        assertEquals(1, r.code(), r.out() + r.err());
        assertEquals(1, r.err().lines().count(), r.err());
        assertTrue(r.err().contains("no permission") && r.err().contains("PTRACE_MODE_READ"), r.err());
        assertEquals("", r.out());
    }

    private static void copyTree(Path src, Path dst) throws IOException {
        if (!Files.isDirectory(src)) {
            Files.copy(src, dst);
            Files.setPosixFilePermissions(dst, PosixFilePermissions.fromString("rw-r--r--"));
            return;
        }
        try (Stream<Path> s = Files.walk(src)) {
            for (Path x : s.toList()) {
                Path t = dst.resolve(src.relativize(x).toString());
                if (Files.isDirectory(x)) Files.createDirectories(t);
                else Files.copy(x, t);
                Files.setPosixFilePermissions(t, PosixFilePermissions.fromString(Files.isDirectory(x) ? "rwxr-xr-x" : "rw-r--r--"));
            }
        }
    }
}
