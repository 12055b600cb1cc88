package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.reflect.Array;
import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import io.guestmem.testsupport.UncaughtExceptionGuard;
import org.junit.jupiter.api.Test;

/**
 * {@link UncaughtExceptionGuard}: a helper thread's uncaught exception fails the test that started it. The proof
 * runs sample tests through the JUnit platform launcher (reflectively: it is on surefire's test runtime class
 * path, not on the compile class path), so the guard is the one the module registers, found by autodetection.
 */
class UncaughtExceptionGuardTest {

    /** Samples, run only through {@link #run}: surefire does not select nested classes, and they check a flag. */
    static volatile boolean sampling;

    static class HelperThrows {
        @Test
        void startsAHelperThatThrows() throws InterruptedException {
            if (!sampling) return;
            Thread t = new Thread(() -> {
                throw new IllegalStateException("boom from the helper");
            }, "sample-helper");
            t.start();
            t.join(10_000);
        }
    }

    static class HelperHandlesItsOwn {
        @Test
        void startsAHelperThatDiesOnPurpose() throws InterruptedException {
            if (!sampling) return;
            List<Throwable> seen = new ArrayList<>();
            Thread t = new Thread(() -> {
                throw new IllegalStateException("killed on purpose");
            }, "sample-killed");
            t.setUncaughtExceptionHandler((th, e) -> seen.add(e)); // a test that kills a thread on purpose
            t.start();
            t.join(10_000);
            assertEquals(1, seen.size());
        }

        @Test
        void startsAHelperThatFinishes() throws InterruptedException {
            if (!sampling) return;
            Thread t = new Thread(() -> {}, "sample-fine");
            t.start();
            t.join(10_000);
        }
    }

    /** What the launcher said: tests run, failed, and the failures' exceptions. */
    record Outcome(long started, long failed, List<Throwable> failures) {}

    static Outcome run(Class<?> sample) throws Exception {
        ClassLoader cl = UncaughtExceptionGuardTest.class.getClassLoader();
        Class<?> selectors = Class.forName("org.junit.platform.engine.discovery.DiscoverySelectors", true, cl);
        Class<?> selectorType = Class.forName("org.junit.platform.engine.DiscoverySelector", true, cl);
        Class<?> builderType = Class.forName("org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder", true, cl);
        Class<?> requestType = Class.forName("org.junit.platform.launcher.LauncherDiscoveryRequest", true, cl);
        Class<?> listenerType = Class.forName("org.junit.platform.launcher.TestExecutionListener", true, cl);
        Class<?> summaryListenerType = Class.forName("org.junit.platform.launcher.listeners.SummaryGeneratingListener", true, cl);
        Class<?> factory = Class.forName("org.junit.platform.launcher.core.LauncherFactory", true, cl);

        Object selector = selectors.getMethod("selectClass", Class.class).invoke(null, sample);
        Object selectorArray = Array.newInstance(selectorType, 1);
        Array.set(selectorArray, 0, selector);
        Object builder = builderType.getMethod("request").invoke(null);
        builderType.getMethod("selectors", selectorArray.getClass()).invoke(builder, selectorArray);
        Object request = builderType.getMethod("build").invoke(builder);
        Object listener = summaryListenerType.getConstructor().newInstance();
        Object listeners = Array.newInstance(listenerType, 1);
        Array.set(listeners, 0, listener);
        Object launcher = factory.getMethod("create").invoke(null);
        Class<?> launcherType = Class.forName("org.junit.platform.launcher.Launcher", true, cl);
        Method execute = launcherType.getMethod("execute", requestType, listeners.getClass());
        sampling = true;
        try {
            execute.invoke(launcher, request, listeners);
        } finally {
            sampling = false;
        }
        Object summary = summaryListenerType.getMethod("getSummary").invoke(listener);
        // Through the public interfaces: the implementations are package-private classes.
        Class<?> summaryType = Class.forName("org.junit.platform.launcher.listeners.TestExecutionSummary", true, cl);
        Class<?> failureType = Class.forName("org.junit.platform.launcher.listeners.TestExecutionSummary$Failure", true, cl);
        long started = (long) summaryType.getMethod("getTestsStartedCount").invoke(summary);
        long failed = (long) summaryType.getMethod("getTestsFailedCount").invoke(summary);
        List<Throwable> failures = new ArrayList<>();
        for (Object f : (List<?>) summaryType.getMethod("getFailures").invoke(summary)) {
            failures.add((Throwable) failureType.getMethod("getException").invoke(f));
        }
        return new Outcome(started, failed, failures);
    }

    @Test
    void theGuardIsInstalledWhileATestRuns() {
        assertInstanceOf(UncaughtExceptionGuard.Recorder.class, Thread.getDefaultUncaughtExceptionHandler(),
                "autodetected from META-INF/services");
    }

    @Test
    void aHelperThreadsUncaughtExceptionFailsTheTestThatStartedIt() throws Exception {
        Thread.UncaughtExceptionHandler outer = Thread.getDefaultUncaughtExceptionHandler();
        Outcome o = run(HelperThrows.class);
        System.out.println("sample with a throwing helper: " + o);
        assertEquals(1, o.started());
        assertEquals(1, o.failed(), "the sample whose helper threw must fail");
        Throwable f = o.failures().get(0);
        assertInstanceOf(AssertionError.class, f);
        assertTrue(f.getMessage().contains("sample-helper"), f.getMessage());
        assertNotNull(f.getCause());
        assertEquals("boom from the helper", f.getCause().getMessage());
        assertEquals(outer, Thread.getDefaultUncaughtExceptionHandler(), "the inner run restored this test's recorder");
    }

    @Test
    void threadsWithTheirOwnHandlerAndHelpersThatFinishPass() throws Exception {
        Outcome o = run(HelperHandlesItsOwn.class);
        System.out.println("samples with a deliberately killed and a finishing helper: " + o);
        assertEquals(2, o.started());
        assertEquals(0, o.failed(), o.failures().toString());
    }

    /** Every module with tests runs them with the one guard: it depends on test-support and autodetects. */
    @Test
    void everyModuleRunsItsTestsWithTheGuard() throws Exception {
        Path root = Path.of("").toAbsolutePath();
        if (!Files.exists(root.resolve("src/test/java/io/guestmem/it"))) root = root.resolve("src-test");
        Path project = root.getParent();
        for (String m : List.of("native-bridge", "core", "cli", "src-test")) {
            Path module = project.resolve(m);
            String pom = Files.readString(module.resolve("pom.xml"));
            assertTrue(pom.contains("<artifactId>guestmem-test-support</artifactId>"), m + " does not depend on test-support");
            String props = Files.readString(module.resolve("src/test/resources/junit-platform.properties"));
            assertTrue(props.lines().anyMatch(l -> l.trim().equals("junit.jupiter.extensions.autodetection.enabled=true")), m);
        }
    }
}
