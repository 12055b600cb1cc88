package io.guestmem.snapshot;

import io.guestmem.host.Backing;

/**
 * What a snapshot records of one memslot: where it is, how large, what backed it, and how many of its pages
 * the file holds as data and as recorded zeros (the rest were never touched: absent from the file).
 *
 * @param slotId        memslot id
 * @param addressSpace  memslot address space
 * @param gpa           guest physical address of the slot's first page
 * @param size          bytes
 * @param hostPageSize  page size of the backing (4K, a THP's base page, 2M or 1G hugetlb, ...)
 * @param memslotFlags  the memslot's flags (READONLY, LOG_DIRTY_PAGES)
 * @param backingLabel  {@link Backing#label()} of the backing
 * @param dataPages     pages written as data
 * @param zeroPages     pages present but all zero: recorded, not written
 */
public record SnapshotSlot(int slotId, int addressSpace, long gpa, long size, long hostPageSize, int memslotFlags,
                           String backingLabel, long dataPages, long zeroPages) {

    /** The backing, or null when this library has no backing of that label. */
    public Backing backing() {
        for (Backing b : Backing.values()) if (b.label().equals(backingLabel)) return b;
        return null;
    }

    /** The slot's size in guest pages of {@code pageSize} bytes. */
    public long pages(long pageSize) {
        return size / pageSize;
    }

    /** Same place and size (what a restore into existing memory requires). */
    public boolean sameLayoutAs(SnapshotSlot o) {
        return slotId == o.slotId && addressSpace == o.addressSpace && gpa == o.gpa && size == o.size;
    }

    SnapshotSlot withCounts(long data, long zero) {
        return new SnapshotSlot(slotId, addressSpace, gpa, size, hostPageSize, memslotFlags, backingLabel, data, zero);
    }
}
