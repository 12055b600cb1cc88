package io.guestmem.access;

/**
 * Whether a {@link GuestMemory} keeps the VMM's own dirty log ({@link DirtyBitmap} per slot), fixed when it is
 * built, as rust-vmm's {@code vm-memory} fixes it in the type ({@code GuestMemoryMmap<AtomicBitmap>} or
 * {@code GuestMemoryMmap<()>}). Marking costs a full fence per write (what makes a harvest race-free), so a VMM
 * that never migrates or snapshots incrementally, or that tracks through KVM's log alone, can leave it off.
 */
public enum DirtyLogging {
    /** Every write through the memory, its slices, structures and channel transfers marks the slot's log. */
    ON,
    /** Nothing is recorded; asking the log anything throws IllegalStateException. */
    OFF
}
