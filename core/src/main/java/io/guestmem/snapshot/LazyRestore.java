package io.guestmem.snapshot;

import io.guestmem.host.HostRegion;
import io.guestmem.kvm.KvmVm;
import io.guestmem.mmu.FollowPfnOptions;
import io.guestmem.sys.UseAfterClose;
import io.guestmem.vm.VmMemory;
import java.io.IOException;
import java.time.Duration;
import java.util.List;

/**
 * Restores guest memory on demand, through userfaultfd: the memory is usable at once, and each page arrives when
 * something first touches it (a vCPU, through KVM's GUP; any kernel access; the host's own accessors), while a
 * background thread streams the rest. What the kernel offers per backing:
 * <ul>
 *   <li>private memory (anon, THP, hugetlb): MISSING faults, answered by {@code UFFDIO_COPY} of the recorded
 *       bytes, or {@code UFFDIO_ZEROPAGE} where nothing is recorded (hugetlb has no zeropage: a copy of zeros);</li>
 *   <li>fd-backed memory (memfd, hugetlb memfd): MISSING and MINOR faults; the page cache is filled from the
 *       snapshot through the file ({@code pwrite}) and the fault answered by {@code UFFDIO_CONTINUE}. The
 *       prefetcher only fills the page cache, so a later touch is a MINOR fault: a mapping, no copy.</li>
 * </ul>
 * Pages are served in blocks of at least 64 KiB (a huge page on hugetlb) by a {@link UffdPageServer}: one
 * fault brings its neighbours, a fault jumps the prefetcher's queue. Once every block with recorded data has
 * arrived the ranges are unregistered, so from then on faults are the kernel's ordinary ones (a page nothing
 * recorded reads zero, as a fresh one). {@link RemoteLazyRestore} is the same with the handler in another
 * process.
 *
 * <p>The host's accessors ({@link VmMemory#memory()}) never fault on a page not yet restored: this restore is
 * their access policy for its slots, and brings the block in on the calling thread before the access. (A JVM
 * thread must not block in a page fault while in Java code: the fault handler is Java too, and a safepoint
 * would wait for both.) Code that touches a region's segment directly must wait for {@link #awaitComplete}.
 *
 * <p>A block whose record cannot be read or fails its checksum is poisoned ({@code UFFDIO_POISON}, Linux 6.6+):
 * the accessor that needed it throws {@link LazyRestoreException}, a kernel access gets EFAULT, and the guest a
 * memory error; never a hang and never wrong bytes. memfd_secret slots cannot be registered with userfaultfd:
 * restore those eagerly.
 */
public final class LazyRestore implements AutoCloseable {
    private final VmMemory memory;
    private final LazyRegions lazy;
    private final UffdPageServer server;
    private volatile boolean closed;

    /**
     * Builds fresh regions of the recorded backings with the recorded slots (mirrored into {@code vm}, or none
     * when null), registers them with a userfaultfd and starts serving: the memory can be used, and a guest
     * run, as soon as this returns. The snapshots stay open until {@link #close}; the caller closes them after.
     * On failure everything built is released.
     */
    public static LazyRestore start(List<Snapshot> chain, KvmVm vm) throws IOException {
        return new LazyRestore(chain, vm, true);
    }

    /**
     * As {@link #start(List, KvmVm)}; without {@code prefetch} pages arrive only when touched (to measure
     * fault service, or for a guest that touches little of its memory).
     */
    public static LazyRestore start(List<Snapshot> chain, KvmVm vm, boolean prefetch) throws IOException {
        return new LazyRestore(chain, vm, prefetch);
    }

    private LazyRestore(List<Snapshot> chain, KvmVm vm, boolean prefetch) throws IOException {
        SnapshotManifest m = SnapshotRestore.checkChain(chain);
        RestorePolicy policy = new RestorePolicy(m.slots().stream().map(SnapshotSlot::slotId).toList());
        memory = new VmMemory(vm, FollowPfnOptions.defaults(), policy);
        LazyRegions l = null;
        try {
            l = LazyRegions.create(m, memory);
            l.addSlots(memory);
        } catch (RuntimeException | Error e) {
            if (l != null) l.uffd.close();
            release(memory, l == null ? List.of() : l.regions, e);
            throw e;
        }
        lazy = l;
        server = UffdPageServer.start(l.uffd, m.pageSize(), l.ranges(), new SnapshotPages(chain, m.pageSize()), prefetch,
                l.canPoison(), "guestmem-lazy-restore");
        policy.attach((slot, gfn, write) -> {
            // a failed block stays poisoned after completion: the accessors keep asking, so it throws, not SIGBUS
            if (server.completeWithoutFailures()) policy.complete();
            else server.serveAccess(slot, gfn);
        });
    }

    static void release(VmMemory memory, List<HostRegion> regions, Throwable cause) {
        try {
            new RestoredMemory(memory, regions, null).close();
        } catch (RuntimeException suppressed) {
            if (cause != null) cause.addSuppressed(suppressed);
            else throw suppressed;
        }
    }

    public VmMemory memory() {
        if (closed) throw UseAfterClose.of("LazyRestore", "memory()");
        return memory;
    }

    public List<HostRegion> regions() {
        return List.copyOf(lazy.regions);
    }

    /** Waits until every data block has arrived (or the timeout); true when complete. */
    public boolean awaitComplete(Duration timeout) throws InterruptedException {
        return server.awaitComplete(timeout);
    }

    /** The last failure to serve a block (or of the handler thread), null if none. */
    public Throwable lastFailure() {
        return server.lastFailure();
    }

    public LazyRestoreStats stats() {
        return server.stats();
    }

    /** Stops the handler (bounded), closes the userfaultfd, the memory and the regions. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        server.close();
        lazy.uffd.close(); // wakes any fault still waiting: it retries as an ordinary fault
        release(memory, lazy.regions, null);
    }
}
