package io.guestmem.lock;

import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;

/**
 * A range of host virtual addresses {@code [start, end)}, both aligned to the host's base page
 * ({@code sysconf(_SC_PAGESIZE)}, as mlock and {@code locked_vm} count it), never empty.
 *
 * @param start the first byte
 * @param end   one past the last byte
 */
public record HvaRange(long start, long end) {
    /** The host's base page, from sysconf: what {@link #pages()} counts in. */
    public static final long PAGE_SIZE = Posix.PAGE_SIZE;

    public HvaRange {
        if (start < 0 || end <= start) {
            throw new IllegalArgumentException("hva range [" + Fmt.hex(start) + ", " + Fmt.hex(end) + ") is empty or negative");
        }
        if ((start | end) % PAGE_SIZE != 0) {
            throw new IllegalArgumentException("hva range [" + Fmt.hex(start) + ", " + Fmt.hex(end)
                    + ") is not aligned to the " + Fmt.size(PAGE_SIZE) + " host page");
        }
    }

    /** {@code [start, start + length)}. */
    public static HvaRange of(long start, long length) {
        if (length <= 0 || start + length < start) {
            throw new IllegalArgumentException("hva range at " + Fmt.hex(start) + " of " + length + " bytes");
        }
        return new HvaRange(start, start + length);
    }

    public long length() {
        return end - start;
    }

    /** Host base pages in the range. */
    public long pages() {
        return length() / PAGE_SIZE;
    }

    public boolean overlaps(HvaRange o) {
        return start < o.end && o.start < end;
    }

    /** Whether {@code o} begins exactly where this range ends. */
    public boolean precedes(HvaRange o) {
        return end == o.start;
    }

    /** This range with {@code o} appended; {@code o} must begin where this one ends. */
    public HvaRange join(HvaRange o) {
        if (!precedes(o)) throw new IllegalArgumentException(this + " and " + o + " are not adjacent");
        return new HvaRange(start, o.end);
    }

    /** The part of this range inside {@code [s, e)}, or null when none is. */
    public HvaRange clip(long s, long e) {
        long a = Math.max(start, s), b = Math.min(end, e);
        return a < b ? new HvaRange(a, b) : null;
    }

    @Override
    public String toString() {
        return "[" + Fmt.hex(start) + ", " + Fmt.hex(end) + ") " + Fmt.size(length());
    }
}
