package io.guestmem.host;

import io.guestmem.sys.Mman;
import io.guestmem.sys.Sched;
import io.guestmem.sys.SyscallException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;

/**
 * Faulting a region in ahead of use with {@code MADV_POPULATE_READ/WRITE}: one madvise per chunk, never
 * one call per page. Large ranges are split across platform threads (populating 1 GiB of 4K pages takes
 * seconds on one thread; the fault path scales with cores). No worker begins before every worker runs on its
 * own CPU of the caller's affinity set: on a scheduler that packs threads onto few CPUs (this development
 * machine's guest kernel runs with {@code sched_vcpu_pack}) a worker that starts its madvise early keeps the
 * CPU it shares with a worker or creator not yet moved, and that one then waits out the whole madvise
 * (measured: 170-225 ms late in about half the runs, two threads no faster than one). So each worker pins
 * itself and reports ready, and only then are all released. Pinning is best effort: a refusal leaves a
 * worker where the scheduler puts it.
 */
public final class Prefault {
    private Prefault() {}

    /** READ maps what reads would (the zero page for untouched anonymous memory); WRITE allocates. */
    public enum Mode {
        READ(Mman.MADV_POPULATE_READ), WRITE(Mman.MADV_POPULATE_WRITE);

        final int advice;

        Mode(int advice) {
            this.advice = advice;
        }
    }

    /** Below this a single madvise is cheaper than starting threads. */
    public static final long PARALLEL_THRESHOLD = 64L << 20;

    /** Threads used for a range of {@code length}: one per core, each with at least the threshold's share. */
    public static int threadsFor(long length) {
        if (length < PARALLEL_THRESHOLD) return 1;
        return (int) Math.max(1, Math.min(Runtime.getRuntime().availableProcessors(), length / (PARALLEL_THRESHOLD / 2)));
    }

    /**
     * Populates {@code [addr, addr+length)} with {@code threads} threads, each taking a contiguous chunk
     * aligned to {@code pageSize} (a huge page is never split between two threads). Throws the first
     * failure (a SyscallException naming the madvise) after all threads finished.
     */
    public static void populate(long addr, long length, long pageSize, Mode mode, int threads) {
        long pages = length / pageSize;
        int n = (int) Math.max(1, Math.min(threads, pages));
        if (n == 1) {
            Mman.madvise(addr, length, mode.advice);
            return;
        }
        long per = (pages + n - 1) / n * pageSize;
        int[] cpus = allowedCpusOrNone();
        List<Thread> workers = new ArrayList<>();
        RuntimeException[] failure = new RuntimeException[1];
        CountDownLatch ready = new CountDownLatch((int) ((length + per - 1) / per)), go = new CountDownLatch(1);
        try {
            for (long off = 0; off < length; off += per) {
                long start = addr + off, len = Math.min(per, length - off);
                int cpu = cpus.length > 1 ? cpus[workers.size() % cpus.length] : -1;
                workers.add(Thread.ofPlatform().name("guestmem-prefault").start(() -> {
                    try {
                        pinBestEffort(cpu);
                        ready.countDown();
                        awaitUninterruptibly(go);
                        Mman.madvise(start, len, mode.advice);
                    } catch (RuntimeException e) {
                        synchronized (failure) {
                            if (failure[0] == null) failure[0] = e;
                        }
                    }
                }));
            }
            awaitUninterruptibly(ready); // every worker is on its CPU
        } finally {
            go.countDown(); // also when a thread failed to start: those started do their part, then join
        }
        boolean interrupted = false;
        for (Thread t : workers) {
            while (true) {
                try {
                    t.join();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true; // the threads cannot be stopped mid-madvise; finish joining
                }
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
        if (failure[0] != null) throw failure[0];
    }

    private static int[] allowedCpusOrNone() {
        try {
            return Sched.allowedCpus();
        } catch (SyscallException e) {
            return new int[0];
        }
    }

    private static void pinBestEffort(int cpu) {
        if (cpu < 0) return;
        try {
            Sched.pinCurrentThread(cpu);
        } catch (SyscallException e) {
            // a cpuset or seccomp refusal: run where the scheduler puts us
        }
    }

    private static void awaitUninterruptibly(CountDownLatch latch) {
        boolean interrupted = false;
        while (true) {
            try {
                latch.await();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    /**
     * Faults pages in by touching one byte per page from Java: for memory the kernel's populate path
     * cannot reach (memfd_secret refuses GUP). WRITE rewrites the byte it read.
     */
    static void touch(MemorySegment s, long pageSize, Mode mode) {
        for (long off = 0; off < s.byteSize(); off += pageSize) {
            byte b = s.get(ValueLayout.JAVA_BYTE, off);
            if (mode == Mode.WRITE) s.set(ValueLayout.JAVA_BYTE, off, b);
        }
    }
}
