package io.guestmem.snapshot;

import java.util.List;

/**
 * A snapshot's header and slot layout.
 *
 * @param id            this snapshot's id (random, never 0)
 * @param baseId        the id of the snapshot this one is an increment on, 0 for a full snapshot
 * @param pageSize      guest page size in bytes (the memslots' page size when it was taken)
 * @param createdMillis wall-clock time it was taken
 * @param slots         the RAM slots, in gpa order
 */
public record SnapshotManifest(long id, long baseId, long pageSize, long createdMillis, List<SnapshotSlot> slots) {
    public SnapshotManifest {
        slots = List.copyOf(slots);
    }

    public boolean incremental() {
        return baseId != 0;
    }

    /** Same slots at the same places (ids, address spaces, gpas, sizes) and the same page size. */
    public boolean sameLayoutAs(SnapshotManifest o) {
        if (pageSize != o.pageSize || slots.size() != o.slots.size()) return false;
        for (int i = 0; i < slots.size(); i++) if (!slots.get(i).sameLayoutAs(o.slots.get(i))) return false;
        return true;
    }

    public long dataPages() {
        return slots.stream().mapToLong(SnapshotSlot::dataPages).sum();
    }

    public long zeroPages() {
        return slots.stream().mapToLong(SnapshotSlot::zeroPages).sum();
    }
}
