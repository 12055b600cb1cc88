package io.guestmem.migration;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.access.GuestMemory;
import io.guestmem.host.HostRegion;
import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.GuestProgram;
import io.guestmem.kvm.KvmAvailable;
import io.guestmem.kvm.KvmDirtyLog;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.testsupport.FaultyChannel;
import io.guestmem.vm.VmMemory;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ByteChannel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Live migration of a real KVM guest's memory to another process: the guest rewrites every page of an anonymous
 * and a memfd slot, pass after pass, while the pre-copy rounds go out (the pages it dirties come from KVM's dirty
 * log); then it is paused, the last pages and every page's checksum are sent, and in the destination process a new
 * VM's guest checks that every page holds what the source's guest left. Plus the failures: a corrupt record, a
 * peer that goes away on either side.
 */
class LiveMigrationTest {
    static final long BOOT = 0x40000, CODE = 0x1000, TAG_GPA = 0x30000, DATA = 2 << 20;
    static final long[] DATA_GPAS = {0x200000, 0x800000};
    @TempDir Path dir;

    static long guestPages() {
        return DATA / GuestCpu.GUEST_PAGE;
    }

    @Test
    void aRunningGuestMovesToAnotherProcessAndFindsEveryPageAsItLeftIt() throws Exception {
        migrateARunningGuest(MigrationSource.Options.defaults());
    }

    /**
     * Post-copy: pre-copy until the rule stops it, then the switch with the last dirty pages still at the source;
     * the destination's guest runs at once and its faults (through KVM's GUP) pull them.
     */
    @Test
    void postCopyRunsTheGuestOnTheDestinationWhileItsLastPagesArrive() throws Exception {
        migrateARunningGuest(MigrationSource.Options.defaults().withPostCopy(true));
    }

    private void migrateARunningGuest(MigrationSource.Options options) throws Exception {
        KvmAvailable.assume();
        GuestCpu g = GuestCpu.current();
        Path sock = dir.resolve("migrate.sock");
        try (KvmVm vm = KvmVm.open(); VmMemory mem = new VmMemory(vm);
             HostRegion boot = HostRegion.anonymous(BOOT).create();
             HostRegion anon = HostRegion.anonymous(DATA).create();
             HostRegion memfd = HostRegion.memfd(DATA).create();
             ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            g.prepareVm(vm);
            GuestMemory gm = mem.memory();
            Map<Integer, KvmDirtyLog> logs = new HashMap<>();
            Memslot[] slots = {gm.addRam(0, 0, boot, 0, BOOT, Memslot.LOG_DIRTY_PAGES),
                    gm.addRam(1, DATA_GPAS[0], anon, 0, DATA, Memslot.LOG_DIRTY_PAGES),
                    gm.addRam(2, DATA_GPAS[1], memfd, 0, DATA, Memslot.LOG_DIRTY_PAGES)};
            for (Memslot s : slots) logs.put(s.id(), KvmDirtyLog.of(vm, s));
            Vcpu cpu = vm.createVcpu(0);

            // The guest: pass after pass, every page of both slots gets pageValue(gfn, pass), until paused.
            AtomicBoolean stop = new AtomicBoolean();
            AtomicInteger passes = new AtomicInteger();
            AtomicReference<Throwable> guestFailure = new AtomicReference<>();
            Thread guest = Thread.ofPlatform().name("guest").start(() -> {
                try {
                    for (int pass = 1; !stop.get(); pass++) {
                        for (long gpa : DATA_GPAS) {
                            GuestProgram p = g.writeGfnToEveryPage(CODE, gpa, guestPages(), pass);
                            for (GuestProgram.Chunk c : p.image()) gm.write(c.gpa(), c.bytes());
                            List<VcpuExit> exits = g.runToCompletion(cpu, p, 64);
                            if (!exits.isEmpty()) throw new AssertionError("guest exits " + exits);
                        }
                        passes.set(pass);
                    }
                } catch (Throwable t) {
                    guestFailure.set(t);
                }
            });
            while (passes.get() == 0 && guest.isAlive()) Thread.sleep(1);

            server.bind(UnixDomainSocketAddress.of(sock));
            Process child = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                    "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                    MigrationDestinationChild.class.getName(), sock.toString()).redirectErrorStream(true).start();
            CompletableFuture<String> childOut = CompletableFuture.supplyAsync(() -> {
                try {
                    return new String(child.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                } catch (IOException e) {
                    return e.toString();
                }
            });
            int[] lastPass = new int[1];
            MigrationStats stats;
            try (SocketChannel ch = server.accept()) {
                stats = MigrationSource.send(gm, ch, s -> logs.get(s.id()).collect(), () -> {
                    stop.set(true);
                    try {
                        guest.join(TimeUnit.SECONDS.toMillis(60));
                    } catch (InterruptedException e) {
                        throw new IllegalStateException(e);
                    }
                    // device state travels with the memory: the tag the guest last wrote, in a page it never touches
                    lastPass[0] = passes.get();
                    gm.writeU64(TAG_GPA, lastPass[0]);
                }, options);
            }
            assertFalse(guest.isAlive(), "the guest was paused");
            assertNull(guestFailure.get());
            assertTrue(child.waitFor(120, TimeUnit.SECONDS), "the destination finished");
            String out = childOut.get(10, TimeUnit.SECONDS);
            System.out.println("live migration: " + stats);
            System.out.println("destination: " + out.trim());
            assertEquals(0, child.exitValue(), out);
            assertTrue(stats.verified(), "every page's checksum agreed at the switch: " + stats);
            assertEquals(3 * 0 + (BOOT + 2 * DATA) / gm.memslots().geometry().pageSize(), stats.checked());
            assertTrue(stats.rounds() >= 2, "the guest wrote during pre-copy, so there was more than the full round: " + stats);
            assertTrue(stats.pagesPerRound().get(1) > 0, "round 1 sent what the guest dirtied during round 0: " + stats);
            String result = out.lines().filter(l -> l.startsWith("RESULT ")).findFirst().orElseThrow(() -> new AssertionError(out));
            assertTrue(result.contains(" wrong=0 "), "the guest on the destination found every page as left: " + result);
            assertTrue(result.contains(" tag=" + lastPass[0]), result);
            assertTrue(result.contains(" agree=" + stats.checked() + " checked=" + stats.checked()), result);
            if (options.postCopy()) {
                assertTrue(stats.postCopyPages() > 0, "the guest's last writes were left to post-copy: " + stats);
                assertTrue(result.contains(" postCopyPages=" + stats.postCopyPages() + " "), result);
                assertTrue(result.contains(" failures=0"), result);
                long faults = Long.parseLong(result.replaceAll(".* faults=(\\d+).*", "$1"));
                assertTrue(faults > 0, "the destination guest's own faults (KVM's GUP) brought pages: " + result);
            }
            for (KvmDirtyLog l : logs.values()) l.close();
        }
    }

    /**
     * Post-copy with a source that goes away after two of the destination's requests: the pages that cannot
     * arrive are poisoned, the accessor that needs one gets an error (not a hang), and closing releases all.
     */
    @Test
    void aSourceLostDuringPostCopyFailsTheAccessesThatNeedItsPages() throws Exception {
        long size = 3 << 20; // not the size of a thread's stack
        try (GuestMemory src = new GuestMemory(new Memslots()); HostRegion a = HostRegion.anonymous(size).create();
             HostRegion m = HostRegion.memfd(size).create()) {
            src.addRam(0, 0, a, 0, size, Memslot.LOG_DIRTY_PAGES);
            src.addRam(1, size, m, 0, size, Memslot.LOG_DIRTY_PAGES);
            for (long off = 0; off < 2 * size; off += 4096) src.writeU64(off, off + 1);
            SocketChannel[] p = FaultyChannel.pair(dir);
            ByteChannel dying = FaultyChannel.dyingAfterRead(p[0], 2 * 32); // the source's end: gone after two requests
            CompletableFuture<Throwable> source = CompletableFuture.supplyAsync(() -> {
                try {
                    MigrationSource.send(src, dying, null, () -> { // the guest's last writes: every page, once more
                        for (long off = 0; off < 2 * size; off += 4096) src.writeU64(off, off + 2);
                    }, MigrationSource.Options.defaults().withPostCopy(true));
                    return null;
                } catch (Throwable t) {
                    return t;
                }
            });
            try (SocketChannel in = p[1]) {
                // nothing pulled in the background: the two requests the source answers are the accessors' below
                MigrationDestination.Received got = MigrationDestination.receive(in, null, false);
                PostCopy post = got.postCopy();
                assertNotNull(post, "a post-copy migration returns at the switch");
                try (var restored = got.memory()) {
                    GuestMemory dst = restored.memory().memory();
                    assertEquals(2L, dst.readU64(0), "a page that arrived before the source went away");
                    assertEquals(size + 2, dst.readU64(size), "and another");
                    post.pullRest();
                    io.guestmem.snapshot.LazyRestoreException e = assertTimeoutPreemptively(java.time.Duration.ofSeconds(30),
                            () -> assertThrows(io.guestmem.snapshot.LazyRestoreException.class, () -> dst.readU64(2 * size - 4096)));
                    System.out.println("post-copy, source lost: " + e.getMessage());
                    assertFalse(post.awaitComplete(java.time.Duration.ofSeconds(30)), "the migration did not complete");
                    assertNotNull(post.failure());
                    assertTrue(post.stats().failures() > 0, "blocks were poisoned: " + post.stats());
                }
            }
            // what the destination released is the leak guard's to check, precisely: MigrationLeakTest
            Throwable s = source.get(30, TimeUnit.SECONDS);
            assertInstanceOf(IOException.class, s, "the source fails with an I/O error, not a hang: " + s);
            assertEquals(2L, src.readU64(0), "the source's memory is as it left it");
        }
    }

    /** A record whose body was changed on the way is refused at its offset, and the destination releases everything. */
    @Test
    void aCorruptRecordIsRefusedAtItsOffsetAndNothingStaysMapped() throws Exception {
        try (GuestMemory src = new GuestMemory(new Memslots()); HostRegion r = HostRegion.anonymous(1 << 20).create()) {
            src.addRam(0, 0, r);
            for (long off = 0; off < (1 << 20); off += 8192) src.writeU64(off, off | 1);
            SocketChannel[] p = FaultyChannel.pair(dir);
            long header = 16 + 64 + 4, flipAt = header + 32 + 10;
            ByteChannel corrupting = FaultyChannel.flipping(p[0], flipAt);
            CompletableFuture<Throwable> source = CompletableFuture.supplyAsync(() -> {
                try {
                    MigrationSource.send(src, corrupting, null, () -> {}, MigrationSource.Options.defaults());
                    return null;
                } catch (Throwable t) {
                    return t;
                } finally {
                    try {
                        corrupting.close();
                    } catch (IOException ignored) {
                        // closing anyway
                    }
                }
            });
            MigrationException e;
            try (SocketChannel in = p[1]) {
                e = assertThrows(MigrationException.class, () -> MigrationDestination.receive(in, null));
            }
            System.out.println("corrupt record: " + e.getMessage());
            assertEquals(header + 32, e.offset(), "the body of the first record");
            assertTrue(e.getMessage().contains("checksum mismatch"), e.getMessage());
            // that the destination released its regions is the leak guard's to check: MigrationLeakTest
            Throwable s = source.get(30, TimeUnit.SECONDS);
            assertInstanceOf(IOException.class, s, "the source learns the peer went away: " + s);
            assertEquals(1L, src.readU64(0), "the source's memory is untouched");
        }
    }

    /** A source that goes away after the first round leaves the destination with nothing mapped and a typed error. */
    @Test
    void aPeerThatDisconnectsMidMigrationLeavesNothingBehind() throws Exception {
        try (GuestMemory src = new GuestMemory(new Memslots()); HostRegion r = HostRegion.memfd(1 << 20).create()) {
            src.addRam(0, 0, r);
            for (long off = 0; off < (1 << 20); off += 4096) src.writeU64(off, off + 7);
            SocketChannel[] p = FaultyChannel.pair(dir);
            // the source's pause kills the connection: the destination has the full round and then EOF
            CompletableFuture<Throwable> source = CompletableFuture.supplyAsync(() -> {
                try {
                    MigrationSource.send(src, p[0], null, () -> {
                        try {
                            p[0].close();
                        } catch (IOException ignored) {
                            // the point of the test
                        }
                    }, MigrationSource.Options.defaults());
                    return null;
                } catch (Throwable t) {
                    return t;
                }
            });
            MigrationException e;
            try (SocketChannel in = p[1]) {
                e = assertThrows(MigrationException.class, () -> MigrationDestination.receive(in, null));
            }
            System.out.println("disconnected: " + e.getMessage());
            assertTrue(e.getMessage().contains("closed the stream"), e.getMessage());
            // that the destination released what it built is the leak guard's to check: MigrationLeakTest
            Throwable s = source.get(30, TimeUnit.SECONDS);
            assertInstanceOf(IOException.class, s, "the source fails with an I/O error, not a hang: " + s);
            assertEquals(7L, src.readU64(0), "the source's memory is as it was");
        }
    }
}
