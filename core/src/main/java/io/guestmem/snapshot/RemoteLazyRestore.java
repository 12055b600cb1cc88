package io.guestmem.snapshot;

import io.guestmem.host.HostRegion;
import io.guestmem.kvm.KvmVm;
import io.guestmem.mmu.FollowPfnOptions;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Mman;
import io.guestmem.sys.SyscallException;
import io.guestmem.sys.UnixSocket;
import io.guestmem.sys.UseAfterClose;
import io.guestmem.vm.VmMemory;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A lazy restore whose page-fault handler runs in another process ({@link RemoteRestoreHandler}): this VMM builds
 * the regions of a snapshot's layout, registers them with a userfaultfd, hands the userfaultfd and the backing
 * files to the handler over a unix socket and, once it answers READY, adds the slots: the guest runs at once and
 * its faults are the handler's to serve.
 *
 * <p>The host's accessors bring a block in before they touch it by faulting it in from native code
 * ({@code madvise(MADV_POPULATE_READ)}): the thread waits in the kernel for the handler, never in Java code. If the
 * handler goes away before COMPLETE, every page not yet in place is poisoned ({@code UFFDIO_POISON}, with this
 * process's own copy of the userfaultfd), so a guest or accessor that needs one gets an error instead of waiting
 * forever.
 */
public final class RemoteLazyRestore implements AutoCloseable {
    private final VmMemory memory;
    private final LazyRegions lazy;
    private final RestorePolicy policy;
    private final UnixSocket conn;
    private final AtomicIntegerArray[] present; // per slot index, per block: brought in by an accessor
    private final int[] indexBySlotId;
    private final UffdPageServer.Range[] ranges;
    private final long pageSize;
    private final Thread watcher;
    private final AtomicLong accessorFetches = new AtomicLong();
    private volatile LazyRestoreStats handlerStats;
    private volatile String failure;
    private volatile boolean complete; // the handler reported COMPLETE (every block served or poisoned)
    private volatile boolean ended, closed;

    /**
     * Builds {@code layout}'s regions (into {@code vm}, or no VM when null), hands them to the handler on
     * {@code conn} and waits up to {@code timeout} for its READY. A REFUSED answer is thrown as
     * {@link SnapshotLayoutException}; on any failure nothing is left mapped. {@code conn} is this restore's
     * from now on (closed by {@link #close}).
     */
    public static RemoteLazyRestore start(SnapshotManifest layout, KvmVm vm, UnixSocket conn, Duration timeout) {
        return new RemoteLazyRestore(layout, vm, conn, timeout);
    }

    private RemoteLazyRestore(SnapshotManifest m, KvmVm vm, UnixSocket conn, Duration timeout) {
        this.conn = conn;
        pageSize = m.pageSize();
        policy = new RestorePolicy(m.slots().stream().map(SnapshotSlot::slotId).toList());
        memory = new VmMemory(vm, FollowPfnOptions.defaults(), policy);
        LazyRegions l = null;
        try {
            l = LazyRegions.create(m, memory);
            List<UffdHandoff.RangeEntry> entries = new ArrayList<>();
            List<Integer> fds = new ArrayList<>(List.of(l.uffd.fd()));
            for (int i = 0; i < l.regions.size(); i++) {
                UffdPageServer.Range r = l.ranges().get(i);
                int fdIndex = -1;
                if (r.fd() >= 0) {
                    fdIndex = fds.size();
                    fds.add(r.fd());
                }
                entries.add(new UffdHandoff.RangeEntry(r.slotId(), fdIndex, m.slots().get(i).gpa(), r.len(), r.hva(),
                        r.fdOffset(), r.hostPageSize(), r.hugetlb() ? UffdHandoff.FLAG_HUGETLB : 0, m.slots().get(i).addressSpace()));
            }
            conn.send(UffdHandoff.encode(new UffdHandoff.Message(pageSize, l.features, entries)),
                    fds.stream().mapToInt(Integer::intValue).toArray());
            if (!conn.awaitReadable(timeout))
                throw new LazyRestoreException("the page-fault handler did not answer in " + timeout, null);
            UffdHandoff.Reply r = UffdHandoff.read(conn);
            if (r == null) throw new LazyRestoreException("the page-fault handler closed the socket before READY", null);
            if (r.kind() == UffdHandoff.REFUSED) throw new SnapshotLayoutException("the page-fault handler refused: " + r.text());
            if (r.kind() != UffdHandoff.READY) throw new UffdHandoffException("the handler's first record is of kind " + r.kind(), 0);
            l.addSlots(memory);
        } catch (RuntimeException | Error e) {
            if (l != null) l.uffd.close();
            LazyRestore.release(memory, l == null ? List.of() : l.regions, e);
            conn.close();
            throw e;
        }
        lazy = l;
        ranges = l.ranges().toArray(UffdPageServer.Range[]::new);
        present = new AtomicIntegerArray[l.regions.size()];
        int maxId = 0;
        for (UffdPageServer.Range r : l.ranges()) maxId = Math.max(maxId, r.slotId());
        indexBySlotId = new int[maxId + 1];
        for (int i = 0; i < present.length; i++) {
            UffdPageServer.Range r = l.ranges().get(i);
            present[i] = new AtomicIntegerArray((int) ((r.len() + r.block() - 1) / r.block()));
            indexBySlotId[r.slotId()] = i;
        }
        policy.attach(this::bringIn);
        watcher = Thread.ofPlatform().daemon().name("guestmem-remote-restore-watch").start(this::watch);
    }

    /** An accessor's block, faulted in from native code: the handler serves it (or the watcher poisons it). */
    private void bringIn(int slotId, long gfn, boolean write) {
        int i = indexBySlotId[slotId];
        UffdPageServer.Range r = ranges[i];
        long block = r.block();
        int b = (int) ((gfn - r.baseGfn()) * pageSize / block);
        if (present[i].get(b) != 0) return;
        long addr = r.hva() + b * block, len = Math.min(block, r.len() - b * block);
        int e = Mman.madviseRaw(addr, len, Mman.MADV_POPULATE_READ);
        if (e < 0) {
            throw new LazyRestoreException("the page at 0x" + Long.toHexString(addr) + " of slot " + slotId
                    + " could not be restored: " + Errno.nameOf(-e) + " from madvise(MADV_POPULATE_READ)"
                    + (failure == null ? "" : " (" + failure + ")"), null);
        }
        present[i].set(b, 1);
        accessorFetches.incrementAndGet();
    }

    /** Reads the handler's records; at COMPLETE the accessors go straight through, at a premature end it poisons. */
    private void watch() {
        try {
            while (!closed) {
                if (!conn.awaitReadable(Duration.ofMillis(100))) continue;
                UffdHandoff.Reply r = UffdHandoff.read(conn);
                if (r == null) break;
                if (r.kind() == UffdHandoff.POISONED) failure = r.value() + " blocks could not be served: " + r.text();
                if (r.kind() == UffdHandoff.COMPLETE) {
                    handlerStats = UffdHandoff.decodeStats(r.payload());
                    complete = true;
                    // poisoned blocks stay poisoned: the accessors keep populating first, so they get an error
                    // where a direct touch would be a SIGBUS
                    if (failure == null) policy.complete();
                    return;
                }
            }
        } catch (RuntimeException e) {
            failure = "the handler's records: " + e.getMessage();
        } finally {
            ended = true;
        }
        if (closed) return;
        if (failure == null) failure = "the page-fault handler went away before the restore was complete";
        poisonWhatIsMissing();
    }

    /** Every page not yet in place fails from now on: a fault waiting for the dead handler is woken with the error. */
    private void poisonWhatIsMissing() {
        if ((lazy.features & io.guestmem.sys.Userfaultfd.FEATURE_POISON) == 0) {
            // no poison on this kernel: unregistering at least turns the waits into ordinary (zero-filling) faults
            for (UffdPageServer.Range r : ranges) lazy.uffd.unregister(r.hva(), r.len());
            return;
        }
        for (UffdPageServer.Range r : ranges) {
            try {
                UffdPageServer.resolve(r.hva(), r.len(), pageSize, (at, n) -> lazy.uffd.poison(at, n, 0));
            } catch (SyscallException e) {
                failure += "; poisoning slot " + r.slotId() + ": " + e.getMessage();
            }
        }
    }

    public VmMemory memory() {
        if (closed) throw UseAfterClose.of("RemoteLazyRestore", "memory()");
        return memory;
    }

    public List<HostRegion> regions() {
        return List.copyOf(lazy.regions);
    }

    /** Waits until the handler reported COMPLETE (true) or went away (false), or the timeout (false). */
    public boolean awaitComplete(Duration timeout) throws InterruptedException {
        watcher.join(timeout);
        return complete;
    }

    /** The handler's statistics at COMPLETE (its faults, prefetched blocks, bytes read), null before. */
    public LazyRestoreStats handlerStats() {
        return handlerStats;
    }

    /** Blocks this process's accessors faulted in before the restore was complete. */
    public long accessorFetches() {
        return accessorFetches.get();
    }

    /** Why the restore is not whole (blocks the handler could not serve, the handler gone), null if nothing failed. */
    public String failure() {
        return failure;
    }

    /** Whether the handler's stream ended (after COMPLETE, or early). */
    public boolean ended() {
        return ended;
    }

    /** Closes the socket (the handler stops), the userfaultfd, the memory and the regions. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        try {
            watcher.join(Duration.ofSeconds(1));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        conn.close();
        lazy.uffd.close();
        LazyRestore.release(memory, lazy.regions, null);
    }
}
