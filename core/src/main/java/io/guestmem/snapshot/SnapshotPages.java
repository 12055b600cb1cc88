package io.guestmem.snapshot;

import static io.guestmem.snapshot.SnapshotFormat.CHUNK_BYTES;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * A snapshot chain as the source of a lazy restore's pages: a page's bytes are zeros, then each snapshot's
 * records over them in chain order (an increment's records replace its base's), each record checked against its
 * CRC before a byte of it is used.
 */
final class SnapshotPages implements UffdPageServer.PageSource {
    private final List<Snapshot> chain;
    private final long pageSize;
    private final ThreadLocal<ByteBuffer> record;

    SnapshotPages(List<Snapshot> chain, long pageSize) {
        this.chain = List.copyOf(chain);
        this.pageSize = pageSize;
        long recordBytes = Math.max(CHUNK_BYTES, pageSize);
        record = ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect((int) recordBytes));
    }

    @Override
    public List<long[]> dataRuns() {
        List<long[]> out = new ArrayList<>();
        for (Snapshot s : chain)
            for (Snapshot.Run r : s.runs())
                if (!r.zero()) out.add(new long[] {r.slotIndex(), r.firstPage(), r.pages()});
        return out; // file order: the prefetcher reads each file front to back
    }

    @Override
    public long fill(int slot, long firstPage, long pages, MemorySegment out) throws IOException {
        long from = firstPage, to = firstPage + pages, read = 0;
        ByteBuffer buf = record.get();
        for (Snapshot snap : chain) {
            for (Snapshot.Run r : runsOf(snap, slot, from, to)) {
                long lo = Math.max(from, r.firstPage()), hi = Math.min(to, r.firstPage() + r.pages());
                if (r.zero()) {
                    out.asSlice((lo - from) * pageSize, (hi - lo) * pageSize).fill((byte) 0);
                    continue;
                }
                long recLen = (long) r.pages() * pageSize;
                SnapshotRestore.checkedRead(snap, r, buf, r.dataOffset(), recLen);
                read += recLen;
                MemorySegment.copy(MemorySegment.ofBuffer(buf), (lo - r.firstPage()) * pageSize, out,
                        (lo - from) * pageSize, (hi - lo) * pageSize);
            }
        }
        return read;
    }

    /** The runs of slot {@code slot} in {@code snap} that overlap pages [from, to). */
    private static List<Snapshot.Run> runsOf(Snapshot snap, int slot, long from, long to) {
        List<Snapshot.Run> out = new ArrayList<>(4);
        List<Snapshot.Run> runs = snap.runsOfSlot(slot);
        int lo = 0, hi = runs.size();
        while (lo < hi) { // first run ending after `from`
            int mid = (lo + hi) >>> 1;
            Snapshot.Run r = runs.get(mid);
            if (r.firstPage() + r.pages() <= from) lo = mid + 1; else hi = mid;
        }
        for (int i = lo; i < runs.size() && runs.get(i).firstPage() < to; i++) out.add(runs.get(i));
        return out;
    }
}
