package io.guestmem.bench;

import io.guestmem.access.DirtyLogging;
import io.guestmem.access.GuestMemory;
import io.guestmem.access.PageAccessPolicy;
import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import java.util.ArrayList;
import java.util.List;

/**
 * The {@link Layout} as a device model's {@link GuestMemory}: {@code slots} slots, each backed by its own
 * populated host region of {@code backing} (like the C limit's one mmap per slot), and the references' random
 * gpa sequence. The benches that access guest memory set up through this and copy {@link #memory()} and
 * {@link #gpas()} into their own fields, so the measured paths load nothing of it.
 */
final class LayoutGuest implements AutoCloseable {
    private final Memslots memslots = new Memslots();
    private final GuestMemory memory;
    private final List<HostRegion> regions = new ArrayList<>();
    private final long[] gpas;

    LayoutGuest(int slots, String backing) {
        this(slots, backing, DirtyLogging.ON);
    }

    LayoutGuest(int slots, String backing, DirtyLogging logging) {
        memory = new GuestMemory(memslots, 0, PageAccessPolicy.ALLOW_ALL, logging);
        try {
            for (int i = 0; i < slots; i++) {
                HostRegion r = Regions.populatedQuiet(backing, Layout.SLOT);
                regions.add(r);
                memory.addRam(i, Layout.slotGpa(i), r);
            }
        } catch (RuntimeException | Error e) {
            close();
            throw e;
        }
        Regions.report(backing, regions);
        gpas = Layout.randomGpas(slots);
    }

    Memslots memslots() { return memslots; }
    GuestMemory memory() { return memory; }
    /** The reference sequence, {@link Layout#N} gpas: index with {@code & Layout.MASK}. */
    long[] gpas() { return gpas; }

    @Override
    public void close() {
        memory.close();
        for (HostRegion r : regions) r.close();
        regions.clear();
    }
}
