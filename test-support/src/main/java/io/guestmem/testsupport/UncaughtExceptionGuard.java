package io.guestmem.testsupport;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * Fails a test when a thread died of an uncaught exception while it ran: a helper thread's failure would
 * otherwise print a stack trace and vanish, and the test would pass.
 *
 * <p>From a test class's start to its end the JVM's default uncaught-exception handler is a recorder; after
 * each test (and after the class, for what died outside any test) what it recorded fails the test, the first
 * exception as the cause, the others suppressed. The previous handler is restored when the class ends; nested
 * classes stack. A thread that is meant to die of an exception (a test killing a helper on purpose) sets its
 * own handler ({@link Thread#setUncaughtExceptionHandler}): the JVM then never asks the default one.
 * Exceptions a pool keeps in a {@code Future} are not uncaught and stay the test's to check.
 *
 * <p>It lives in the {@code test-support} module, a test-scope dependency of every module with tests; its jar
 * registers it (META-INF/services), and each module's junit-platform.properties turns autodetection on.
 */
public final class UncaughtExceptionGuard implements BeforeAllCallback, AfterEachCallback, AfterAllCallback {

    /** The handler installed for one test class: records, prints, and remembers what it replaced. */
    public static final class Recorder implements Thread.UncaughtExceptionHandler {
        private final Thread.UncaughtExceptionHandler previous;
        private final List<Throwable> died = new ArrayList<>();

        Recorder(Thread.UncaughtExceptionHandler previous) {
            this.previous = previous;
        }

        @Override
        public void uncaughtException(Thread t, Throwable e) {
            AssertionError named = new AssertionError("thread \"" + t.getName() + "\" died of an uncaught " + e, e);
            synchronized (died) {
                died.add(named);
            }
            System.err.println("Exception in thread \"" + t.getName() + "\" (fails the running test):");
            e.printStackTrace();
        }

        /** Throws what was recorded since the last call (and forgets it); returns when nothing was. */
        public void check(String where) {
            List<Throwable> now;
            synchronized (died) {
                if (died.isEmpty()) return;
                now = new ArrayList<>(died);
                died.clear();
            }
            AssertionError failure = new AssertionError(now.size() + " thread(s) died of an uncaught exception during "
                    + where + "; the first: " + now.get(0).getMessage(), now.get(0).getCause());
            for (int i = 1; i < now.size(); i++) failure.addSuppressed(now.get(i));
            throw failure;
        }
    }

    private static final ExtensionContext.Namespace NS = ExtensionContext.Namespace.create(UncaughtExceptionGuard.class);

    /** Installs a recorder as the JVM's default handler; returns it. For the class callbacks and for tests. */
    public static Recorder install() {
        Recorder r = new Recorder(Thread.getDefaultUncaughtExceptionHandler());
        Thread.setDefaultUncaughtExceptionHandler(r);
        return r;
    }

    /** Puts back the handler {@code r} replaced (if {@code r} is still the one installed). */
    public static void uninstall(Recorder r) {
        if (Thread.getDefaultUncaughtExceptionHandler() == r) Thread.setDefaultUncaughtExceptionHandler(r.previous);
    }

    @Override
    public void beforeAll(ExtensionContext context) {
        context.getStore(NS).put(context.getUniqueId(), install());
    }

    @Override
    public void afterEach(ExtensionContext context) {
        Recorder r = recorder(context);
        if (r != null) r.check(context.getDisplayName());
    }

    @Override
    public void afterAll(ExtensionContext context) {
        Recorder r = context.getStore(NS).remove(context.getUniqueId(), Recorder.class);
        if (r == null) return;
        uninstall(r);
        r.check(context.getDisplayName() + " (outside its tests)");
    }

    /** The recorder of the innermost class around {@code context}. */
    private static Recorder recorder(ExtensionContext context) {
        for (ExtensionContext c = context; c != null; c = c.getParent().orElse(null)) {
            Recorder r = c.getStore(NS).get(c.getUniqueId(), Recorder.class);
            if (r != null) return r;
        }
        return null;
    }
}
