package io.guestmem.snapshot;

import io.guestmem.sys.UnixSocket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * The page-fault handler process of {@link RemoteLazyRestoreTest}: connects to the VMM's socket, opens the
 * snapshot itself and serves the VMM's faults from it. Prints {@code SERVED <stats>} when the restore is
 * complete (or the VMM went away), {@code REFUSED <why>} (exit 3) when the VMM's layout is not the snapshot's.
 */
public final class RemoteHandlerChild {
    public static void main(String[] args) throws Exception {
        try (UnixSocket conn = UnixSocket.connect(args[0]); Snapshot snap = Snapshot.open(Path.of(args[1]))) {
            LazyRestoreStats s = RemoteRestoreHandler.serve(conn, List.of(snap), Boolean.parseBoolean(args[2]), Duration.ofMinutes(2));
            System.out.println("SERVED " + s);
        } catch (SnapshotLayoutException e) {
            System.out.println("REFUSED " + e.getMessage());
            System.exit(3);
        }
    }
}
