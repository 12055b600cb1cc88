package io.guestmem.procfs;

import io.guestmem.sys.Fmt;

/**
 * One line of {@code /proc/<pid>/maps} (also the header line of each {@code smaps} block).
 *
 * @param start  first address
 * @param end    address after the last byte
 * @param perms  {@code rwxp} / {@code rwxs} as printed
 * @param offset file offset (page offset for anonymous mappings)
 * @param dev    {@code major:minor} as printed, {@code 00:00} without a file
 * @param inode  inode number, 0 without a file
 * @param name   path or pseudo-name ({@code [heap]}, {@code /dev/zero (deleted)}, ...), empty when anonymous
 */
public record MapsEntry(long start, long end, String perms, long offset, String dev, long inode, String name) {

    public long size() {
        return end - start;
    }

    public boolean contains(long address) {
        return Long.compareUnsigned(address, start) >= 0 && Long.compareUnsigned(address, end) < 0;
    }

    public boolean readable() {
        return perms.charAt(0) == 'r';
    }

    public boolean writable() {
        return perms.charAt(1) == 'w';
    }

    public boolean executable() {
        return perms.charAt(2) == 'x';
    }

    /** MAP_SHARED ({@code s} in the permissions). */
    public boolean shared() {
        return perms.charAt(3) == 's';
    }

    /** The mapping has a file behind it (vm_file): files, shmem, memfd, hugetlbfs, anon inodes. */
    public boolean hasFile() {
        return inode != 0 || !"00:00".equals(dev);
    }

    @Override
    public String toString() {
        return Fmt.hex(start) + "-" + Fmt.hex(end) + " " + perms + " " + Fmt.hex(offset) + " " + dev + " " + inode
                + (name.isEmpty() ? "" : " " + name);
    }

    /** Parses a maps/smaps header line; null when the line is not one. Plain scanning, no regex. */
    static MapsEntry parse(String line) {
        int[] cut = new int[10]; // start,end of the five fields
        int pos = 0, n = line.length();
        for (int f = 0; f < 5; f++) {
            while (pos < n && line.charAt(pos) == ' ') pos++;
            int s = pos;
            while (pos < n && line.charAt(pos) != ' ') pos++;
            if (pos == s) return null;
            cut[2 * f] = s;
            cut[2 * f + 1] = pos;
        }
        int dash = line.indexOf('-', cut[0]);
        if (dash < 0 || dash >= cut[1] || !isHex(line, cut[0], dash) || !isHex(line, dash + 1, cut[1])
                || cut[3] - cut[2] != 4 || !isHex(line, cut[4], cut[5]) || line.indexOf(':', cut[6]) < 0
                || !isDec(line, cut[8], cut[9])) return null;
        while (pos < n && line.charAt(pos) == ' ') pos++;
        return new MapsEntry(
                Long.parseUnsignedLong(line, cut[0], dash, 16),
                Long.parseUnsignedLong(line, dash + 1, cut[1], 16),
                line.substring(cut[2], cut[3]),
                Long.parseUnsignedLong(line, cut[4], cut[5], 16),
                line.substring(cut[6], cut[7]),
                Long.parseUnsignedLong(line, cut[8], cut[9], 10),
                line.substring(pos));
    }

    private static boolean isHex(String s, int from, int to) {
        if (to <= from) return false;
        for (int i = from; i < to; i++) if (Character.digit(s.charAt(i), 16) < 0) return false;
        return true;
    }

    private static boolean isDec(String s, int from, int to) {
        if (to <= from) return false;
        for (int i = from; i < to; i++) if (s.charAt(i) < '0' || s.charAt(i) > '9') return false;
        return true;
    }
}
