package io.guestmem.kvm;

import java.util.Arrays;
import java.util.stream.LongStream;

/**
 * One tracker's answer measured against the pages known to be written (by a guest whose writes the test
 * controls): what it saw, what it missed, what it reported without a write. The honest result of a dirty
 * tracker on this host, e.g. {@code KVM_GET_DIRTY_LOG saw 0 of 3 written pages (missed [0x82, 0x83, 0x85])}.
 *
 * @param rawEntries how many raw records the tracker produced (ring entries count every logged write, so
 *                   they can exceed the distinct pages); equal to {@code reported.length} where not meaningful
 */
public record DirtyTrackerCheck(String tracker, long[] written, long[] reported, long rawEntries, String host) {

    public DirtyTrackerCheck {
        written = LongStream.of(written).sorted().distinct().toArray();
        reported = LongStream.of(reported).sorted().distinct().toArray();
    }

    public static DirtyTrackerCheck of(String tracker, long[] written, long[] reported) {
        return new DirtyTrackerCheck(tracker, written, reported, reported.length, thisHost());
    }

    public static DirtyTrackerCheck of(SlotDirtyTracker t, long[] written, long[] reported) {
        return of(t.name(), written, reported);
    }

    /** The kernel release the JVM runs on (uname -r), to say on which host a result was measured. */
    public static String thisHost() {
        return System.getProperty("os.name") + " " + System.getProperty("os.version");
    }

    @Override
    public long[] written() {
        return written.clone();
    }

    @Override
    public long[] reported() {
        return reported.clone();
    }

    /** Written pages the tracker did not report. */
    public long[] missed() {
        return LongStream.of(written).filter(g -> Arrays.binarySearch(reported, g) < 0).toArray();
    }

    /** Reported pages nobody wrote (as far as the check knows). */
    public long[] extra() {
        return LongStream.of(reported).filter(g -> Arrays.binarySearch(written, g) < 0).toArray();
    }

    public boolean exact() {
        return Arrays.equals(written, reported);
    }

    public String summary() {
        long seen = written.length - missed().length;
        StringBuilder s = new StringBuilder(tracker + " saw " + seen + " of " + written.length + " written pages");
        if (missed().length > 0) s.append(", missed ").append(hex(missed()));
        if (extra().length > 0) s.append(", reported ").append(extra().length).append(" unwritten ").append(hex(extra()));
        if (rawEntries != reported.length) s.append(", from ").append(rawEntries).append(" raw entries");
        return s.append(" on ").append(host).toString();
    }

    private static String hex(long[] gfns) {
        StringBuilder s = new StringBuilder("[");
        for (int i = 0; i < gfns.length && i < 16; i++) s.append(i == 0 ? "" : ", ").append("0x").append(Long.toHexString(gfns[i]));
        return s.append(gfns.length > 16 ? ", ...]" : "]").toString();
    }

    @Override
    public String toString() {
        return summary();
    }
}
