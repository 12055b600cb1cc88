package io.guestmem.gmem;

import io.guestmem.mmu.Mappability;
/**
 * The outcome of {@link GuestMemfdRegion#toPrivate} / {@link GuestMemfdRegion#toShared} over
 * {@code [offset, offset + length)}: {@code completed} pages reached {@code target} at once (or were there
 * already), {@code pending} pages are {@link Mappability#NONE} until the library's last reference to each is
 * released; {@code firstPendingOffset} is the offset of the first of those, -1 when none.
 */
public record Conversion(long offset, long length, Mappability target, long completed, long pending,
                         long firstPendingOffset) {

    /** True when every page of the range is already {@link #target()}. */
    public boolean isComplete() {
        return pending == 0;
    }
}
