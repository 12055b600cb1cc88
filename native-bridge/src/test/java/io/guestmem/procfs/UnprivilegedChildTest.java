package io.guestmem.procfs;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** A child JVM without CAP_SYS_ADMIN sees its present pages with pfns reported hidden, never as 0. */
class UnprivilegedChildTest {

    @Test
    void childWithoutCapSysAdminSeesHiddenPfns() throws Exception {
        Assumptions.assumeTrue(Posix.geteuid() == 0, "needs root to start a child as uid 65534 (setpriv)");
        Assumptions.assumeTrue(Files.isExecutable(Path.of("/usr/bin/setpriv")), "setpriv (util-linux) is not installed");
        // The classes must be readable by uid 65534: copy them to a world-readable temp dir.
        Path dir = Files.createTempDirectory("guestmem-probe");
        try {
            Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
            List<String> cp = new ArrayList<>();
            int i = 0;
            // Pagemap needs io.guestmem.sys.Arch, which detects the architecture with commons-lang3 (a jar).
            for (Class<?> c : List.of(Pagemap.class, HiddenPfnProbe.class, org.apache.commons.lang3.ArchUtils.class)) {
                Path src = Path.of(c.getProtectionDomain().getCodeSource().getLocation().toURI());
                Path dst = dir.resolve("cp" + i++);
                copyTree(src, dst);
                cp.add(dst.toString());
            }
            String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
            // a class-path child, like the test: native access for the unnamed module
            List<String> cmd = List.of("/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                    "--inh-caps=-all", java, "--enable-native-access=ALL-UNNAMED", "-cp", String.join(":", cp),
                    HiddenPfnProbe.class.getName());
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes());
            assertTrue(p.waitFor(60, TimeUnit.SECONDS));
            System.out.println("unprivileged child saw:\n" + out);
            assertEquals(0, p.exitValue(), out);
            assertTrue(out.contains("uid=65534"), out);
            assertTrue(out.contains("pfnVisible=false"), out);
            long entries = out.lines().filter(l -> l.startsWith("entry=")).count();
            assertEquals(4, entries, out);
            for (String l : out.lines().filter(x -> x.startsWith("entry=")).toList()) {
                String[] f = l.substring(6).split(",");
                assertEquals("true", f[0], l);      // present
                assertEquals("HIDDEN", f[1], l);    // pfn state
                assertEquals("false", f[2], l);     // no pfn handed out
                assertEquals(Long.toString(io.guestmem.procfs.PagemapEntry.PFN_HIDDEN), f[4], l);
                long raw = Long.parseUnsignedLong(f[3], 16);
                assertEquals(0, raw & PagemapEntry.PFN_MASK, "the kernel zeroed the pfn field: " + l);
            }
            assertFalse(out.contains("kpageflags=opened"), "kpageflags must be refused without CAP_SYS_ADMIN: " + out);
        } finally {
            try (Stream<Path> s = Files.walk(dir)) {
                s.sorted(Comparator.reverseOrder()).forEach(x -> x.toFile().delete());
            }
        }
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
}
