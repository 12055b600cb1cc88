package io.guestmem.cli;

import io.guestmem.sys.Fmt;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/**
 * A virtual address range {@code [start, end)} given as {@code START-END} in hex, with or without
 * {@code 0x}. Addresses compare unsigned (the top of the 64-bit space is a valid end).
 */
public record AddressRange(long start, long end) {
    /** Every address. */
    public static final AddressRange ALL = new AddressRange(0, -1L);

    public AddressRange {
        if (Long.compareUnsigned(end, start) <= 0)
            throw new IllegalArgumentException("END " + Fmt.hex(end) + " must be above START " + Fmt.hex(start));
    }

    /** Parses {@code START-END}; the message of the exception is the one line the user sees. */
    public static AddressRange parse(String text) {
        String t = text.trim();
        int dash = t.indexOf('-');
        if (dash <= 0 || dash != t.lastIndexOf('-') || dash == t.length() - 1)
            throw new IllegalArgumentException("'" + text + "' is not START-END (hex addresses, e.g. 7f0000000000-7f0000200000)");
        long start = hex(t.substring(0, dash), text);
        long end = hex(t.substring(dash + 1), text);
        if (Long.compareUnsigned(end, start) <= 0)
            throw new IllegalArgumentException("'" + text + "': END must be above START");
        return new AddressRange(start, end);
    }

    private static long hex(String s, String whole) {
        String h = s.startsWith("0x") || s.startsWith("0X") ? s.substring(2) : s;
        if (h.isEmpty() || h.length() > 16)
            throw new IllegalArgumentException("'" + whole + "': '" + s + "' is not a 64-bit hex address");
        for (int i = 0; i < h.length(); i++)
            if (Character.digit(h.charAt(i), 16) < 0)
                throw new IllegalArgumentException("'" + whole + "': '" + s + "' is not a hex address");
        return Long.parseUnsignedLong(h, 16);
    }

    /** The range widened to whole pages of {@code pageSize} (the end saturates at the top of the space). */
    public AddressRange pageAligned(long pageSize) {
        long s = start & -pageSize;
        long e = (end + pageSize - 1) & -pageSize;
        if (Long.compareUnsigned(e, end) < 0 || e == 0) e = -pageSize; // wrapped: the last page
        return Long.compareUnsigned(e, s) > 0 ? new AddressRange(s, e) : this;
    }

    public boolean isAll() {
        return start == 0 && end == -1L;
    }

    @Override
    public String toString() {
        return Fmt.hex(start) + "-" + Fmt.hex(end);
    }

    /** picocli converter: a bad range becomes a parameter error (one line, exit 2). */
    public static final class Converter implements ITypeConverter<AddressRange> {
        @Override
        public AddressRange convert(String value) {
            try {
                return parse(value);
            } catch (IllegalArgumentException e) {
                throw new TypeConversionException(e.getMessage());
            }
        }
    }
}
