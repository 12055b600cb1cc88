package io.guestmem.host;

import io.guestmem.sys.Mman;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * Faulting a region in ahead of use with {@code MADV_POPULATE_READ/WRITE}: one madvise per chunk, never
 * one call per page. Large ranges are split across platform threads (populating 1 GiB of 4K pages takes
 * seconds on one thread; the fault path scales with cores).
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
        List<Thread> workers = new ArrayList<>();
        RuntimeException[] failure = new RuntimeException[1];
        for (long off = 0; off < length; off += per) {
            long start = addr + off, len = Math.min(per, length - off);
            workers.add(Thread.ofPlatform().name("guestmem-prefault").start(() -> {
                try {
                    Mman.madvise(start, len, mode.advice);
                } catch (RuntimeException e) {
                    synchronized (failure) {
                        if (failure[0] == null) failure[0] = e;
                    }
                }
            }));
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
