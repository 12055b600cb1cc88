package io.guestmem.sys;

/** How the bridge spells addresses and sizes in messages: {@code 0x7f2a40000000}, {@code 2 MiB}. */
public final class Fmt {
    private Fmt() {}

    public static String hex(long v) {
        return "0x" + Long.toHexString(v);
    }

    public static String size(long bytes) {
        if (bytes >= 0) {
            if (bytes != 0 && bytes % (1L << 30) == 0) return (bytes >> 30) + " GiB";
            if (bytes != 0 && bytes % (1L << 20) == 0) return (bytes >> 20) + " MiB";
            if (bytes != 0 && bytes % (1L << 10) == 0) return (bytes >> 10) + " KiB";
        }
        return bytes + " B";
    }
}
