package io.guestmem.snapshot;

import io.guestmem.host.Backing;
import io.guestmem.sys.Posix;
import io.guestmem.sys.UnixSocket;
import io.guestmem.sys.Userfaultfd;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * The page-fault handler of a lazy restore, in its own process (as Firecracker's page-fault handler is): it
 * receives the VMM's userfaultfd and backing files over a unix socket ({@link UffdHandoff}), checks the layout the
 * VMM built against the snapshot's manifest, serves the VMM's faults from the snapshot chain with a
 * {@link UffdPageServer}, and reports READY, then POISONED (if blocks could not be served) and COMPLETE.
 */
public final class RemoteRestoreHandler {
    private RemoteRestoreHandler() {}

    /**
     * Serves one VMM on {@code conn} until the restore is complete (every data block arrived, the ranges
     * unregistered) or {@code timeout}; returns the statistics. A handoff that does not match the snapshot is
     * answered REFUSED and thrown as {@link SnapshotLayoutException}; the descriptors received are closed in every case.
     */
    public static LazyRestoreStats serve(UnixSocket conn, List<Snapshot> chain, boolean prefetch, Duration timeout)
            throws InterruptedException {
        SnapshotManifest m = SnapshotRestore.checkChain(chain);
        UffdHandoff.Received in = UffdHandoff.receive(conn);
        Userfaultfd uffd = Userfaultfd.adopt(in.fds()[0]);
        try {
            List<UffdPageServer.Range> ranges;
            try {
                ranges = check(in, m);
            } catch (SnapshotLayoutException e) {
                UffdHandoff.send(conn, UffdHandoff.REFUSED, 0, e.getMessage());
                throw e;
            }
            boolean canPoison = (in.message().uffdFeatures() & Userfaultfd.FEATURE_POISON) != 0;
            UffdPageServer server = UffdPageServer.start(uffd, m.pageSize(), ranges, new SnapshotPages(chain, m.pageSize()),
                    prefetch, canPoison, "guestmem-remote-restore");
            try {
                UffdHandoff.send(conn, UffdHandoff.READY, server.stats().dataBlocks(), "");
                long deadline = System.nanoTime() + timeout.toNanos();
                while (!server.awaitComplete(Duration.ofMillis(50)) && System.nanoTime() < deadline) {
                    // the VMM closing its end ends the restore: nothing is left to serve
                    if (conn.awaitReadable(Duration.ZERO) && UffdHandoff.read(conn) == null) break;
                }
                LazyRestoreStats s = server.stats();
                if (s.failures() > 0) {
                    Throwable f = server.lastFailure();
                    UffdHandoff.send(conn, UffdHandoff.POISONED, s.failures(), f == null ? "" : String.valueOf(f.getMessage()));
                }
                if (server.complete()) UffdHandoff.send(conn, UffdHandoff.COMPLETE, s.faultsServed(), UffdHandoff.encode(s));
                return s;
            } finally {
                server.close();
            }
        } finally {
            uffd.close();
            for (int i = 1; i < in.fds().length; i++) Posix.close(in.fds()[i]);
        }
    }

    /** The VMM's layout against the manifest: same slots in the same places, of backings that fit. */
    private static List<UffdPageServer.Range> check(UffdHandoff.Received in, SnapshotManifest m) {
        UffdHandoff.Message msg = in.message();
        if (msg.pageSize() != m.pageSize())
            throw new SnapshotLayoutException("the VMM's page size is " + msg.pageSize() + ", the snapshot's " + m.pageSize());
        if (msg.ranges().size() != m.slots().size())
            throw new SnapshotLayoutException("the VMM has " + msg.ranges().size() + " slots, the snapshot " + m.slots().size());
        List<UffdPageServer.Range> out = new ArrayList<>();
        for (int i = 0; i < m.slots().size(); i++) {
            SnapshotSlot s = m.slots().get(i);
            UffdHandoff.RangeEntry r = msg.ranges().get(i);
            if (r.slotId() != s.slotId() || r.addressSpace() != s.addressSpace() || r.gpa() != s.gpa() || r.size() != s.size())
                throw new SnapshotLayoutException("slot " + i + ": the VMM has slot " + r.slotId() + " at 0x"
                        + Long.toHexString(r.gpa()) + " (" + r.size() + " bytes), the snapshot slot " + s.slotId() + " at 0x"
                        + Long.toHexString(s.gpa()) + " (" + s.size() + " bytes)");
            if (r.hostPageSize() != s.hostPageSize())
                throw new SnapshotLayoutException("slot " + s.slotId() + ": host pages of " + r.hostPageSize()
                        + " bytes, the snapshot's " + s.hostPageSize());
            boolean fileBacked = s.backing() == Backing.MEMFD || s.backing() == Backing.MEMFD_HUGETLB;
            if (fileBacked != (r.fdIndex() >= 0))
                throw new SnapshotLayoutException("slot " + s.slotId() + " (" + s.backingLabel() + "): the VMM "
                        + (fileBacked ? "sent no file for it" : "backs it with a file"));
            out.add(new UffdPageServer.Range(r.slotId(), r.gpa() / m.pageSize(), r.hva(), r.size(), r.hostPageSize(),
                    r.fdIndex() < 0 ? -1 : in.fds()[r.fdIndex()], r.fdOffset(), r.hugetlb()));
        }
        return out;
    }
}
