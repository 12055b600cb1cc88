package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.guestmem.cli.Main;
import io.guestmem.procfs.Maps;
import io.guestmem.procfs.MapsEntry;
import io.guestmem.procfs.Pagemap;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
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
    static List<String> classpath;

    @BeforeAll
    static void readableClasspath() {
        Assumptions.assumeTrue(Posix.geteuid() == 0, "needs root to start children as uid 65534 (setpriv)");
        Assumptions.assumeTrue(Files.isExecutable(Path.of(SETPRIV[0])), "setpriv (util-linux) is not installed");
        classpath = ChildJvm.worldReadableClasspath(); // uid 65534 must be able to read the classes
    }

    static ChildJvm.Result inspectAsNobody(String... args) {
        List<String> a = new ArrayList<>(List.of("inspect"));
        a.addAll(List.of(args));
        return ChildJvm.run(List.of(SETPRIV), classpath, Main.class, a, 60);
    }

    @Test
    void pfnsOfAReadableProcessAreHidden() throws Exception {
        List<String> cmd = new ArrayList<>(List.of(SETPRIV));
        cmd.addAll(List.of("sleep", "300"));   // destroyed in finally; long enough for a slow (emulated) child JVM
        Process sleeper = new ProcessBuilder(cmd).start();
        try {
            int pid = (int) sleeper.pid();
            MapsEntry stack = null;
            for (int tries = 0; tries < 100; tries++) {
                // One snapshot: the stack must be sleep's, not setpriv's from before the exec (a second read could
                // see sleep mapped while the first still showed setpriv's stack, at another address).
                List<MapsEntry> maps = Maps.read(pid);
                if (maps.stream().anyMatch(m -> m.name().endsWith("/sleep")))
                    for (MapsEntry e : maps) if (e.name().equals("[stack]")) stack = e;
                if (stack != null) break;
                Thread.sleep(20);
            }
            assertNotNull(stack);
            ChildJvm.Result r = inspectAsNobody("--pid", Integer.toString(pid), "--pages", "--json", "--range",
                    Fmt.hex(stack.start()) + "-" + Fmt.hex(stack.end()));
            assertEquals(0, r.exit(), r.err());
            JsonNode doc = new ObjectMapper().readTree(r.stdout());
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
        ChildJvm.Result r = inspectAsNobody("--pid", Long.toString(ProcessHandle.current().pid()));
        assertEquals(1, r.exit(), r.stdout() + r.err());
        assertEquals(1, r.err().lines().count(), r.err());
        assertTrue(r.err().contains("no permission") && r.err().contains("PTRACE_MODE_READ"), r.err());
        assertEquals("", r.stdout());
    }
}
