package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.access.GuestMemory;
import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.migration.MigrationDestination;
import io.guestmem.migration.MigrationException;
import io.guestmem.migration.MigrationSource;
import io.guestmem.migration.MigrationStats;
import io.guestmem.migration.PostCopy;
import io.guestmem.snapshot.LazyRestoreException;
import io.guestmem.snapshot.RestoredMemory;
import io.guestmem.testsupport.FaultyChannel;
import java.io.IOException;
import java.nio.channels.ByteChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

/**
 * Migrations that end badly, under the leak guard: the destination of a damaged stream, either side of a
 * post-copy whose peer goes away, and a post-copy that completes. Each case leaves no mapping, no descriptor
 * (userfaultfds, memfds, sockets), no lock and no pool behind on the side that failed, and the source's memory
 * as it was. In-process (no VM): the guest-driven cases are {@code LiveMigrationTest}'s.
 */
@ExtendWith(LeakGuard.class)
class MigrationLeakTest {
    static final long SIZE = 2 << 20;
    @TempDir Path dir;

    /** Source memory: an anonymous and a memfd slot, every page written, dirty tracking on. */
    record Source(GuestMemory memory, HostRegion anon, HostRegion memfd) implements AutoCloseable {
        static Source open() {
            GuestMemory m = new GuestMemory(new Memslots());
            HostRegion a = HostRegion.anonymous(SIZE).create(), f = HostRegion.memfd(SIZE).create();
            m.addRam(0, 0, a, 0, SIZE, Memslot.LOG_DIRTY_PAGES);
            m.addRam(1, SIZE, f, 0, SIZE, Memslot.LOG_DIRTY_PAGES);
            for (long off = 0; off < 2 * SIZE; off += 4096) m.writeU64(off, off + 1);
            return new Source(m, a, f);
        }

        /** The guest's last writes, with it paused: every page once more, so post-copy has them all to bring. */
        void rewrite() {
            for (long off = 0; off < 2 * SIZE; off += 4096) memory.writeU64(off, off + 2);
        }

        @Override
        public void close() {
            memory.close();
            memfd.close();
            anon.close();
        }
    }

    private static CompletableFuture<Object> send(Source src, ByteChannel ch, boolean postCopy) {
        return CompletableFuture.supplyAsync(() -> {
            try (ch) {
                return MigrationSource.send(src.memory(), ch, null, src::rewrite,
                        MigrationSource.Options.defaults().withPostCopy(postCopy));
            } catch (Throwable t) {
                return t;
            }
        });
    }

    @Test
    void aDamagedStreamIsRefusedAndTheDestinationLeavesNothing() throws Exception {
        try (Source src = Source.open()) {
            SocketChannel[] p = FaultyChannel.pair(dir);
            long header = 16 + 2 * 64 + 4;
            CompletableFuture<Object> source = send(src, FaultyChannel.flipping(p[0], header + 32 + 100), false);
            LeakGuard.Snapshot before = LeakGuard.snapshot();
            try (SocketChannel in = p[1]) {
                MigrationException e = assertThrows(MigrationException.class, () -> MigrationDestination.receive(in, null));
                assertEquals(header + 32, e.offset(), e.getMessage());
            }
            LeakGuard.verify(before, "the destination of a damaged stream");
            assertInstanceOf(IOException.class, source.get(30, TimeUnit.SECONDS));
            assertEquals(1L, src.memory().readU64(0), "the source's memory is untouched");
        }
    }

    @Test
    void aSourceThatGoesAwayMidPreCopyLeavesTheDestinationNothing() throws Exception {
        try (Source src = Source.open()) {
            SocketChannel[] p = FaultyChannel.pair(dir);
            // the source's pause kills the connection: the destination has the full round and then EOF
            CompletableFuture<Object> source = CompletableFuture.supplyAsync(() -> {
                try {
                    return MigrationSource.send(src.memory(), p[0], null, () -> {
                        try {
                            p[0].close();
                        } catch (IOException ignored) {
                            // the point of the test
                        }
                    }, MigrationSource.Options.defaults());
                } catch (Throwable t) {
                    return t;
                }
            });
            LeakGuard.Snapshot before = LeakGuard.snapshot();
            try (SocketChannel in = p[1]) {
                MigrationException e = assertThrows(MigrationException.class, () -> MigrationDestination.receive(in, null));
                assertTrue(e.getMessage().contains("closed the stream"), e.getMessage());
            }
            LeakGuard.verify(before, "the destination of a source that went away mid-pre-copy");
            assertInstanceOf(IOException.class, source.get(30, TimeUnit.SECONDS));
            assertEquals(1L, src.memory().readU64(0), "the source's memory is as it was");
        }
    }

    @Test
    void aPostCopyWhoseSourceGoesAwayFailsItsAccessesAndLeavesNothing() throws Exception {
        try (Source src = Source.open()) {
            SocketChannel[] p = FaultyChannel.pair(dir);
            CompletableFuture<Object> source = send(src, FaultyChannel.dyingAfterRead(p[0], 2 * 32), true);
            LeakGuard.Snapshot before = LeakGuard.snapshot();
            try (SocketChannel in = p[1]) {
                // nothing pulled in the background: the two requests the source answers are the accessors' below
                MigrationDestination.Received got = MigrationDestination.receive(in, null, false);
                try (RestoredMemory m = got.memory()) {
                    GuestMemory dst = m.memory().memory();
                    assertEquals(2L, dst.readU64(0), "a page that arrived before the source went away");
                    assertEquals(SIZE + 2, dst.readU64(SIZE), "and another");
                    got.postCopy().pullRest();
                    LazyRestoreException e = assertTimeoutPreemptively(Duration.ofSeconds(30),
                            () -> assertThrows(LazyRestoreException.class, () -> dst.readU64(2 * SIZE - 4096)));
                    System.out.println("post-copy, source gone: " + e.getMessage());
                    assertFalse(got.postCopy().awaitComplete(Duration.ofSeconds(30)));
                }
            }
            LeakGuard.verify(before, "a post-copy destination whose source went away");
            assertInstanceOf(IOException.class, source.get(30, TimeUnit.SECONDS));
            assertEquals(2L, src.memory().readU64(0), "the source keeps every page");
        }
    }

    @Test
    void aPostCopyWhoseDestinationGoesAwayLeavesTheSourceWhole() throws Exception {
        try (Source src = Source.open()) {
            SocketChannel[] p = FaultyChannel.pair(dir);
            LeakGuard.Snapshot before = LeakGuard.snapshot();
            CompletableFuture<Object> source = send(src, p[0], true);
            try (SocketChannel in = p[1]) {
                MigrationDestination.Received got = MigrationDestination.receive(in, null);
                got.memory().close(); // the destination process ends before every page arrived
            }
            Object s = source.get(30, TimeUnit.SECONDS);
            assertInstanceOf(MigrationException.class, s, "the source learns the destination went away: " + s);
            LeakGuard.verify(before, "both sides of a post-copy whose destination went away");
            for (long off = 0; off < 2 * SIZE; off += 4096) assertEquals(off + 2, src.memory().readU64(off));
        }
    }

    @Test
    void aCompletedPostCopyAgreesOnEveryPageAndClosesClean() throws Exception {
        try (Source src = Source.open()) {
            SocketChannel[] p = FaultyChannel.pair(dir);
            LeakGuard.Snapshot before = LeakGuard.snapshot();
            CompletableFuture<Object> source = send(src, p[0], true);
            MigrationStats done;
            try (SocketChannel in = p[1]) {
                MigrationDestination.Received got = MigrationDestination.receive(in, null);
                PostCopy post = got.postCopy();
                try (RestoredMemory m = got.memory()) {
                    GuestMemory dst = m.memory().memory();
                    assertEquals(2 * SIZE - 4096 + 2, dst.readU64(2 * SIZE - 4096), "an accessor's page arrives first");
                    assertTrue(post.awaitComplete(Duration.ofSeconds(30)), "complete: " + post.failure());
                    done = post.result();
                    for (long off = 0; off < 2 * SIZE; off += 4096) assertEquals(off + 2, dst.readU64(off));
                }
            }
            Object s = source.get(30, TimeUnit.SECONDS);
            MigrationStats stats = assertInstanceOf(MigrationStats.class, s, String.valueOf(s));
            System.out.println("post-copy: " + stats + "; destination " + done);
            assertTrue(stats.verified() && done.verified(), "every page's checksum agreed");
            assertEquals(2 * SIZE / io.guestmem.sys.Posix.PAGE_SIZE, stats.postCopyPages(), "every page was left to post-copy");
            LeakGuard.verify(before, "a completed post-copy");
        }
    }
}
