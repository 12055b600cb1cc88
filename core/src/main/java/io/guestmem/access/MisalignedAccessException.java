package io.guestmem.access;

/**
 * An opaque ({@code ...Volatile}), acquire/release or atomic access at a gpa that is not a multiple of its
 * size. Such an access is not single-copy atomic on the hardware (on x86 a split lock when it crosses a cache
 * line, on arm64 an alignment fault or a torn access), so a guest vCPU could see half of it: refused before
 * any byte is touched ({@link #bytesDone()} is 0). Since slots are page aligned, an aligned access never
 * crosses a slot, and the plain accessors take any alignment.
 */
public final class MisalignedAccessException extends GuestMemoryException {
    private final int size;

    MisalignedAccessException(String op, long gpa, int size, int slotId) {
        super(Reason.MISALIGNED, op, gpa, 0, slotId, "not " + size + "-byte aligned");
        this.size = size;
    }

    /** The access's size in bytes, which the gpa must be a multiple of. */
    public int size() {
        return size;
    }
}
