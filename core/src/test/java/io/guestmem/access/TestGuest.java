package io.guestmem.access;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;

/**
 * The guest most access tests run on: RAM slot 0 at gpa 0 and slot 1 at 1 MiB, adjacent, each over a fresh
 * anonymous 1 MiB region (no page present until written, so pagemap shows what an access touched), and
 * optionally a read-only 1 MiB slot 2 at 4 MiB, a hole away. Closing closes the memory, then the regions.
 */
final class TestGuest implements AutoCloseable {
    static final long MiB = 1 << 20;

    final Memslots slots = new Memslots();
    final GuestMemory gm = new GuestMemory(slots);
    final HostRegion a, b, rom;

    private TestGuest(boolean withRom) {
        a = HostRegion.anonymous(MiB).create();
        b = HostRegion.anonymous(MiB).create();
        rom = withRom ? HostRegion.anonymous(MiB).create() : null;
        gm.addRam(0, 0, a);
        gm.addRam(1, MiB, b);
        if (withRom) gm.addRam(2, 4 * MiB, rom, 0, MiB, Memslot.READONLY);
    }

    /** Slots 0 and 1. */
    static TestGuest twoSlots() {
        return new TestGuest(false);
    }

    /** Slots 0 and 1, and the read-only slot 2. */
    static TestGuest twoSlotsAndRom() {
        return new TestGuest(true);
    }

    @Override
    public void close() {
        gm.close();
        a.close();
        b.close();
        if (rom != null) rom.close();
    }
}
