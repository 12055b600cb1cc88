package io.guestmem.mmu;

import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import io.guestmem.sys.Userfaultfd;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Turns changes made behind the library's back into invalidations: ranges {@link #watch watched} here are
 * registered with a userfaultfd asking for the non-cooperative events, and a daemon thread turns each event
 * into an {@link MmuNotifier#invalidate} start + end:
 * <ul>
 * <li>{@code UFFD_EVENT_REMOVE} ({@code madvise(MADV_DONTNEED/MADV_REMOVE)}, hole punch): its range;</li>
 * <li>{@code UFFD_EVENT_UNMAP} ({@code munmap}, or an mmap over the range): its range;</li>
 * <li>{@code UFFD_EVENT_REMAP} ({@code mremap}): the old range, and the destination (whatever was mapped
 * there was replaced).</li>
 * </ul>
 *
 * <p>Ranges are registered in {@code UFFDIO_REGISTER_MODE_WP} mode without ever write-protecting a page, so
 * no access to guest memory ever faults to this thread; the registration exists only to get the events. A
 * range can belong to one userfaultfd only: watching memory that another userfaultfd (a WP dirty tracker)
 * already registered fails with EBUSY.
 *
 * <p>Timing, which is the kernel's: UNMAP and REMAP are reported after the mapping changed, so a reader
 * that checked {@link MmuNotifier#retryGfn} between the change and this thread's invalidation was not told;
 * REMOVE is reported before the zap (the caller of madvise waits until the event is read, then zaps), so the
 * invalidation may end before the pages are gone. Either way every result whose sequence snapshot predates
 * the event's invalidation is stale afterwards, but a userspace source cannot bracket the change as
 * {@code invalidate_range_start/end} do: code the library owns must use {@link MmuNotifier#invalidate}
 * around its own munmap/madvise, and this source is the safety net for code it does not own. Page migration,
 * compaction, khugepaged and NUMA balancing produce no event at all (see {@link MmuNotifier}).
 */
public final class UffdInvalidationSource implements AutoCloseable {

    /** The events this source asks for. */
    public static final long FEATURES = Userfaultfd.FEATURE_EVENT_REMOVE | Userfaultfd.FEATURE_EVENT_UNMAP
            | Userfaultfd.FEATURE_EVENT_REMAP;

    private final MmuNotifier notifier;
    private final Userfaultfd uffd;
    private final Thread thread;
    private volatile boolean stopping;
    private final AtomicLong events = new AtomicLong();
    private final AtomicReference<Throwable> lastFailure = new AtomicReference<>();

    private UffdInvalidationSource(MmuNotifier notifier, Userfaultfd uffd) {
        this.notifier = notifier;
        this.uffd = uffd;
        this.thread = new Thread(this::run, "guestmem-uffd-invalidation");
        thread.setDaemon(true);
    }

    /**
     * Opens a user-mode-only userfaultfd (no privilege needed), negotiates the non-cooperative events (and WP
     * on shmem/hugetlb when the kernel has it), and starts the reader thread.
     *
     * @throws SyscallException when the kernel has no userfaultfd or refuses the features
     */
    public static UffdInvalidationSource start(MmuNotifier notifier) {
        Userfaultfd uffd = negotiate(FEATURES | Userfaultfd.FEATURE_WP_HUGETLBFS_SHMEM);
        if (uffd == null) uffd = negotiate(FEATURES);
        if (uffd == null) {
            // once more, to surface the kernel's own error
            Userfaultfd u = Userfaultfd.open(true);
            try {
                u.api(FEATURES);
            } catch (RuntimeException e) {
                u.close();
                throw e;
            }
            uffd = u;
        }
        UffdInvalidationSource s = new UffdInvalidationSource(notifier, uffd);
        s.thread.start();
        return s;
    }

    /** A handshake asking for {@code features} on a fresh fd (UFFDIO_API works once per fd), or null. */
    private static Userfaultfd negotiate(long features) {
        Userfaultfd u = Userfaultfd.open(true);
        try {
            Userfaultfd.Api api = u.api(features);
            if (api.has(features)) return u;
        } catch (SyscallException e) {
            // fall through: the kernel lacks one of the features
        }
        u.close();
        return null;
    }

    /** Starts reporting changes to {@code [hva, hva + len)} (page aligned, mapped). */
    public void watch(long hva, long len) {
        uffd.register(hva, len, Userfaultfd.MODE_WP);
    }

    /** Stops reporting changes to {@code [hva, hva + len)} (it must still be mapped). */
    public void unwatch(long hva, long len) {
        uffd.unregister(hva, len);
    }

    /** Events turned into invalidations so far. */
    public long eventsHandled() {
        return events.get();
    }

    /** The last failure of the reader thread (it keeps running), or null. */
    public Throwable lastFailure() {
        return lastFailure.get();
    }

    private void run() {
        while (!stopping) {
            try {
                Userfaultfd.Event e = uffd.await(Duration.ofMillis(50));
                if (e == null) continue;
                handle(e);
                events.incrementAndGet();
            } catch (IllegalStateException closed) {
                if (stopping) return;
                lastFailure.set(closed);
            } catch (RuntimeException | Error t) {
                lastFailure.set(t);
            }
        }
    }

    private void handle(Userfaultfd.Event e) {
        switch (e) {
            case Userfaultfd.Remove r -> invalidate(r.start(), r.end());
            case Userfaultfd.Unmap u -> invalidate(u.start(), u.end());
            case Userfaultfd.Remap m -> {
                invalidate(m.from(), m.from() + m.len());
                invalidate(m.to(), m.to() + m.len());
            }
            case Userfaultfd.Fork f -> Posix.close(f.ufd()); // not asked for; never leak the child's fd
            case Userfaultfd.Pagefault p -> lastFailure.set(new IllegalStateException("unexpected fault " + p));
            case Userfaultfd.Unknown u -> lastFailure.set(new IllegalStateException("unknown uffd event " + u));
        }
    }

    private void invalidate(long start, long end) {
        if (end <= start) return;
        try (Invalidation inv = notifier.invalidate(start, end)) {
            // the kernel already made (UNMAP, REMAP) or is about to make (REMOVE) the change
        }
    }

    /** Stops the thread and closes the userfaultfd (the kernel unregisters every watched range). */
    @Override
    public void close() {
        if (stopping) return;
        stopping = true;
        try {
            thread.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        uffd.close();
    }
}
