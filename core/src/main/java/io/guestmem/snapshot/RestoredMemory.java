package io.guestmem.snapshot;

import io.guestmem.host.HostRegion;
import io.guestmem.vm.VmMemory;
import java.util.ArrayList;
import java.util.List;

/**
 * Guest memory brought back from snapshots into fresh regions: the {@link VmMemory} with the recorded slots,
 * the regions it owns, and what the restore did. Closing closes the memory, then the regions.
 */
public final class RestoredMemory implements AutoCloseable {
    private final VmMemory memory;
    private final List<HostRegion> regions;
    private final RestoreStats stats;
    private final AutoCloseable server;

    /** Memory built of fresh {@code regions} (which it now owns) by a restore here or a migration's destination. */
    public RestoredMemory(VmMemory memory, List<HostRegion> regions, RestoreStats stats) {
        this(memory, regions, stats, null);
    }

    /** As above, with {@code server} (what still serves the memory's pages, or null) closed first. */
    public RestoredMemory(VmMemory memory, List<HostRegion> regions, RestoreStats stats, AutoCloseable server) {
        this.memory = memory;
        this.regions = List.copyOf(regions);
        this.stats = stats;
        this.server = server;
    }

    public VmMemory memory() {
        return memory;
    }

    public List<HostRegion> regions() {
        return regions;
    }

    public RestoreStats stats() {
        return stats;
    }

    /** Closes the server, the memory and every region (all of them, even when one fails; the first failure is thrown). */
    @Override
    public void close() {
        List<AutoCloseable> all = new ArrayList<>();
        if (server != null) all.add(server);
        all.add(memory);
        all.addAll(regions.reversed());
        RuntimeException first = null;
        for (AutoCloseable c : all) {
            try {
                c.close();
            } catch (Exception e) {
                if (first == null) first = e instanceof RuntimeException re ? re : new IllegalStateException(e);
                else first.addSuppressed(e);
            }
        }
        if (first != null) throw first;
    }
}
