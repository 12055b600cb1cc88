package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * Every memslot change retires the accessors' layout (its shared segment is closed right after the next one
 * is published). Accesses to a slot that did not change must never notice: readers and writers hammer slot 0
 * while another thread adds and deletes slot 1 thousands of times, and every access must succeed with the
 * right value; the atomic counter ends at exactly the number of increments.
 *
 * <p>The plain fast path reads the layout without ordering, so the JIT may keep an old one in registers
 * across a hot loop; the second test proves such a loop still never reads or writes through a layout a
 * finished change replaced: the region a moved slot left is poisoned right after the change returns, and
 * no read may see the poison, no write may overwrite it.
 */
class LayoutChangeRaceTest {
    static final long MiB = 1 << 20;

    @Test
    void accessesToAnUnchangedSlotNeverFailWhileOthersChange() throws Exception {
        Memslots slots = new Memslots();
        GuestMemory gm = new GuestMemory(slots);
        try (HostRegion a = HostRegion.anonymous(2 * MiB).create(); HostRegion b = HostRegion.anonymous(2 * MiB).create()) {
            gm.addRam(0, 0, a);
            gm.writeU64(4096, 0x1122334455667788L);
            AtomicBoolean stop = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            long[] increments = new long[2];
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < 2; t++) {
                final int id = t;
                threads.add(Thread.ofPlatform().start(() -> {
                    byte[] page = new byte[4096];
                    try {
                        long n = 0;
                        while (!stop.get()) {
                            assertEquals(0x1122334455667788L, gm.readU64(4096));
                            assertEquals(0x55667788, gm.readU32Volatile(4096));
                            gm.writeU64(8192 + 8 * id, n);
                            gm.read(4096, page);
                            assertEquals((byte) 0x88, page[0]);
                            gm.getAndAddU64(0, 1);
                            n++;
                        }
                        increments[id] = n;
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                }));
            }
            // A work target, not a rate: at least a second and at least 102 changes (bounded by a deadline for a
            // broken build), so a slow machine (the arm64 runner under TCG) races as many changes as a fast one.
            int changes = 0;
            long t0 = System.nanoTime(), until = t0 + 1_000_000_000L, deadline = t0 + 120_000_000_000L;
            while ((System.nanoTime() < until || changes <= 100) && System.nanoTime() < deadline && failure.get() == null) {
                gm.addRam(1, 4 * MiB, b);
                gm.removeRam(1);
                changes += 2;
            }
            stop.set(true);
            joinBounded(threads);
            if (failure.get() != null) throw new AssertionError("an access failed after " + changes + " layout changes", failure.get());
            assertTrue(changes > 100, "only " + changes + " layout changes in " + (System.nanoTime() - t0) / 1_000_000 + " ms");
            assertEquals(increments[0] + increments[1], a.segment().get(ValueLayout.JAVA_LONG_UNALIGNED, 0),
                    "every getAndAdd landed exactly once");
        } finally {
            gm.close();
        }
    }

    @Test
    void hotLoopsNeverUseAReplacedLayout() throws Exception {
        final long gpa = 4 * MiB, poison = 0xDEAD_DEAD_DEAD_DEADL;
        Memslots slots = new Memslots();
        GuestMemory gm = new GuestMemory(slots);
        try (HostRegion a = HostRegion.anonymous(2 * MiB).create(); HostRegion b = HostRegion.anonymous(2 * MiB).create()) {
            a.segment().set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0xAAAAL);
            b.segment().set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 0xBBBBL);
            gm.addRam(1, gpa, a);
            AtomicBoolean stop = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            long[] served = new long[2];
            Runnable reader = () -> {
                try {
                    while (!stop.get()) {
                        int k = 0;
                        try {
                            for (; k < 100_000; k++) { // no synchronization inside: the JIT may hoist
                                long v = gm.readU64(gpa);
                                if (v != 0xAAAAL && v != 0xBBBBL) throw new AssertionError("read 0x" + Long.toHexString(v));
                            }
                        } catch (PartialAccessException e) {
                            assertEquals(GuestMemoryException.Reason.NOT_RAM, e.reason()); // between delete and add
                        } finally {
                            served[0] += k; // reads that succeeded: under emulation a move may cut every pass short
                        }
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            };
            Runnable writer = () -> {
                try {
                    long n = 0;
                    while (!stop.get()) {
                        int k = 0;
                        try {
                            for (; k < 100_000; k++) gm.writeU64(gpa + 8, n++);
                        } catch (PartialAccessException e) {
                            assertEquals(GuestMemoryException.Reason.NOT_RAM, e.reason());
                        } finally {
                            served[1] += k;
                        }
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            };
            List<Thread> threads = List.of(Thread.ofPlatform().start(reader), Thread.ofPlatform().start(writer));
            HostRegion cur = a;
            int moves = 0;
            // A work target, not a rate (see above): 1.5 s and more than 50 moves, whichever comes later.
            long t0 = System.nanoTime(), until = t0 + 1_500_000_000L, deadline = t0 + 120_000_000_000L;
            while ((System.nanoTime() < until || moves <= 50) && System.nanoTime() < deadline && failure.get() == null) {
                Thread.sleep(1); // let the loops run (and compile) on the current layout
                HostRegion next = cur == a ? b : a;
                next.segment().set(ValueLayout.JAVA_LONG_UNALIGNED, 0, next == a ? 0xAAAAL : 0xBBBBL);
                gm.removeRam(1);
                gm.addRam(1, gpa, next);
                // cur is no longer guest memory: nothing may read these or write over them from now on
                cur.segment().set(ValueLayout.JAVA_LONG_UNALIGNED, 0, poison);
                cur.segment().set(ValueLayout.JAVA_LONG_UNALIGNED, 8, poison);
                Thread.sleep(1);
                assertEquals(poison, cur.segment().get(ValueLayout.JAVA_LONG_UNALIGNED, 8),
                        "a write landed in the region slot 1 left, after move " + moves);
                cur = next;
                moves++;
            }
            stop.set(true);
            joinBounded(threads);
            if (failure.get() != null) throw new AssertionError("after " + moves + " moves", failure.get());
            assertTrue(moves > 50, "only " + moves + " moves");
            assertTrue(served[0] > 0 && served[1] > 0, "the loops never completed an access: " + served[0] + ", " + served[1]);
        } finally {
            gm.close();
        }
    }

    /** Joins the test's threads with a bound: a thread that does not stop fails the test instead of hanging it. */
    static void joinBounded(List<Thread> threads) throws InterruptedException {
        for (Thread t : threads) {
            t.join(java.time.Duration.ofSeconds(30));
            assertTrue(!t.isAlive(), t + " did not stop within 30 s of being told to");
        }
    }
}
