package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.fail;

import java.util.concurrent.Callable;
import java.util.concurrent.FutureTask;
import java.util.concurrent.TimeUnit;

/**
 * Bounded helpers for the concurrent tests: a call on a thread of its own whose result (or exception) is
 * fetched with a deadline, and a wait for a thread to reach a state. Nothing here can hang a test run: every
 * wait ends in a failure after {@link #LIMIT_S} seconds.
 */
final class Concurrently {
    /** Generous on purpose: the arm64 runner emulates, and a failure here means a hang, not slowness. */
    static final long LIMIT_S = 30;

    private Concurrently() {}

    /** A call running on its own daemon thread. */
    record Call<T>(Thread thread, FutureTask<T> task) {
        /** The result, or the call's exception (unwrapped); fails the test after the limit. */
        T get() throws Exception {
            try {
                return task.get(LIMIT_S, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException e) {
                if (e.getCause() instanceof Exception x) throw x;
                throw new AssertionError(e.getCause());
            } catch (java.util.concurrent.TimeoutException e) {
                thread.interrupt();
                throw new AssertionError(thread.getName() + " did not finish in " + LIMIT_S + " s");
            }
        }

        /** The call's exception, which must be of {@code type}; fails if it returned or threw another. */
        <X extends Throwable> X failure(Class<X> type) throws Exception {
            T r;
            try {
                r = get();
            } catch (Exception e) {
                if (type.isInstance(e)) return type.cast(e);
                throw new AssertionError("expected " + type.getSimpleName() + ", got " + e, e);
            }
            throw new AssertionError("expected " + type.getSimpleName() + ", returned " + r);
        }

        boolean isDone() {
            return task.isDone();
        }
    }

    static <T> Call<T> start(String name, Callable<T> body) {
        FutureTask<T> task = new FutureTask<>(body);
        Thread t = Thread.ofPlatform().name(name).daemon().start(task);
        return new Call<>(t, task);
    }

    /** Waits until {@code t} is in {@code state} (blocked in a wait of ours, or in a system call: RUNNABLE). */
    static void awaitState(Thread t, Thread.State state) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(LIMIT_S);
        while (t.getState() != state) {
            if (!t.isAlive()) fail(t.getName() + " ended before reaching " + state);
            if (System.nanoTime() > deadline) fail(t.getName() + " is " + t.getState() + ", not " + state);
            Thread.sleep(1);
        }
    }
}
