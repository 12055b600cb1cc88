package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.snapshot.LazyRestore;
import io.guestmem.snapshot.LazyRestoreException;
import io.guestmem.snapshot.RemoteLazyRestore;
import io.guestmem.snapshot.RemoteRestoreHandler;
import io.guestmem.snapshot.Snapshot;
import io.guestmem.snapshot.SnapshotLayoutException;
import io.guestmem.snapshot.SnapshotManifest;
import io.guestmem.snapshot.SnapshotSlot;
import io.guestmem.snapshot.SnapshotWriter;
import io.guestmem.sys.Posix;
import io.guestmem.sys.UnixSocket;
import io.guestmem.vm.VmMemory;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * Lazy restores that end badly, under the leak guard: a snapshot record that fails its checksum, a page-fault
 * handler that refuses the layout it is handed, and one that goes away mid-restore. Each fails the access or the
 * start with an error (never a hang) and leaves no mapping, userfaultfd, memfd or socket behind once closed. The
 * handler runs on a thread here (the same protocol as in another process: {@code RemoteLazyRestoreTest}).
 */
@ExtendWith(LeakGuard.class)
class RestoreLeakTest {
    static final long SIZE = 2 << 20, P = Posix.PAGE_SIZE;
    @TempDir static Path dir;
    static Path good;

    /** An anonymous and a memfd slot, every page holding data. */
    @BeforeAll
    static void snapshot() throws Exception {
        good = dir.resolve("good.snap");
        try (VmMemory vm = new VmMemory(); HostRegion a = HostRegion.anonymous(SIZE).create();
             HostRegion m = HostRegion.memfd(SIZE).create()) {
            vm.memory().addRam(0, 0, a);
            vm.memory().addRam(1, SIZE, m);
            for (long off = 0; off < 2 * SIZE; off += P) vm.memory().writeU64(off, off | 1);
            SnapshotWriter.write(vm.memory(), good);
        }
    }

    @Test
    void aCorruptRecordFailsItsAccessAndTheRestoreClosesClean() throws Exception {
        Path bad = dir.resolve("bad.snap");
        java.nio.file.Files.copy(good, bad, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        long at;
        try (Snapshot s = Snapshot.open(bad)) {
            at = s.runs().stream().filter(r -> !r.zero() && r.slotIndex() == 1).findFirst().orElseThrow().dataOffset();
        }
        try (RandomAccessFile f = new RandomAccessFile(bad.toFile(), "rw")) {
            f.seek(at + 9);
            int b = f.read();
            f.seek(at + 9);
            f.write(b ^ 4);
        }
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        try (Snapshot s = Snapshot.open(bad); LazyRestore lazy = LazyRestore.start(List.of(s), null, true)) {
            LazyRestoreException e = assertThrows(LazyRestoreException.class, () -> lazy.memory().memory().readU64(SIZE));
            assertTrue(e.getMessage().contains("checksum mismatch"), e.getMessage());
            assertEquals(1L, lazy.memory().memory().readU64(0), "the other slot is whole");
            // once every other block is in and the ranges are unregistered the failed block stays poisoned: the
            // accessor still refuses it (a touch would be a SIGBUS, seen in Java as an InternalError)
            assertTrue(lazy.awaitComplete(Duration.ofSeconds(60)), "the restore completes around the failed block");
            // the block failed once (whether the prefetcher or the access got to it first): every later refusal
            // says the reason that one saw
            e = assertThrows(LazyRestoreException.class, () -> lazy.memory().memory().readU64(SIZE));
            assertTrue(e.getMessage().contains("could not be restored") && e.getMessage().contains("checksum mismatch"),
                    e.getMessage());
            assertEquals(1L, lazy.memory().memory().readU64(0), "the other slot is whole after completion");
        }
        LeakGuard.verify(before, "a lazy restore of a corrupt snapshot");
    }

    private static CompletableFuture<Object> handler(UnixSocket conn, Path snap) {
        return CompletableFuture.supplyAsync(() -> {
            try (conn; Snapshot s = Snapshot.open(snap)) {
                return RemoteRestoreHandler.serve(conn, List.of(s), false, Duration.ofSeconds(60));
            } catch (Throwable t) {
                return t;
            }
        });
    }

    @Test
    void aLayoutTheHandlerRefusesLeavesNothingOnEitherSide() throws Exception {
        SnapshotManifest m;
        try (Snapshot s = Snapshot.open(good)) {
            m = s.manifest();
        }
        List<SnapshotSlot> moved = new ArrayList<>(m.slots());
        SnapshotSlot a = moved.get(1);
        moved.set(1, new SnapshotSlot(a.slotId(), a.addressSpace(), a.gpa() + 4 * SIZE, a.size(), a.hostPageSize(),
                a.memslotFlags(), a.backingLabel(), a.dataPages(), a.zeroPages()));
        SnapshotManifest wrong = new SnapshotManifest(m.id(), m.baseId(), m.pageSize(), m.createdMillis(), moved);
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        UnixSocket.Pair p = UnixSocket.pair();
        CompletableFuture<Object> h = handler(p.second(), good);
        try (UnixSocket vmm = p.first()) {
            SnapshotLayoutException e = assertThrows(SnapshotLayoutException.class,
                    () -> RemoteLazyRestore.start(wrong, null, vmm, Duration.ofSeconds(60)));
            assertTrue(e.getMessage().contains("refused"), e.getMessage());
        }
        assertInstanceOf(SnapshotLayoutException.class, h.get(60, TimeUnit.SECONDS));
        LeakGuard.verify(before, "a refused remote restore, both sides");
    }

    @Test
    void aHandlerThatGoesAwayLeavesTheMissingPagesFailingAndNothingBehind() throws Exception {
        SnapshotManifest m;
        try (Snapshot s = Snapshot.open(good)) {
            m = s.manifest();
        }
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        UnixSocket.Pair p = UnixSocket.pair();
        CompletableFuture<Object> h = handler(p.second(), good); // no prefetch: pages arrive only when asked for
        try (UnixSocket vmm = p.first(); RemoteLazyRestore lazy = RemoteLazyRestore.start(m, null, vmm, Duration.ofSeconds(60))) {
            assertEquals(1L, lazy.memory().memory().readU64(0), "a page the handler served");
            p.second().close(); // the handler goes away: its end of the socket closes, as when its process dies
            Object ended = h.get(60, TimeUnit.SECONDS);
            System.out.println("handler ended with: " + ended);
            LazyRestoreException e = assertTimeoutPreemptively(Duration.ofSeconds(60),
                    () -> assertThrows(LazyRestoreException.class, () -> lazy.memory().memory().readU64(SIZE + 7 * P)));
            System.out.println("handler gone: " + e.getMessage());
        }
        LeakGuard.verify(before, "a remote restore whose handler went away");
    }
}
