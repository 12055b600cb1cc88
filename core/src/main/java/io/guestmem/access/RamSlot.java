package io.guestmem.access;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;

/**
 * One memslot of a {@link GuestMemory} with the host memory behind it: the slot as published, the registered
 * region whose range holds the slot's hva range, and where in that region the slot starts. What a snapshot
 * records of a slot and a restore builds again.
 *
 * @param slot         the memslot
 * @param region       the host region backing it
 * @param regionOffset byte offset of the slot's first page in {@code region}
 */
public record RamSlot(Memslot slot, HostRegion region, long regionOffset) {}
