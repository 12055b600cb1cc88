package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.access.GuestMemory;
import io.guestmem.testsupport.QemuGuest;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.vhost.Features;
import io.guestmem.vhost.Request;
import io.guestmem.vhost.VhostUserDevice;
import io.guestmem.vhost.VhostUserServer;
import io.guestmem.vhost.VhostUserSession;
import io.guestmem.vhost.blk.RawImage;
import io.guestmem.vhost.blk.VirtioBlk;
import io.guestmem.vhost.queue.DescriptorChain;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * guestmem's vhost-user-blk back-end serving a real Linux guest under QEMU: the guest RAM is QEMU's (a shared
 * memfd it hands over region by region), the rings are the Linux virtio-blk driver's, the I/O is the guest's
 * own O_DIRECT dd. Runs where an x86-64 QEMU can be installed (the arm64 runner skips it: the guest is x86-64).
 */
class QemuVhostUserBlkTest {
    private static final int PATTERN_MIB = 16;   // what the guest's /init writes and checks
    private static final long IMAGE = 64L << 20;
    private static final Duration BOOT = Duration.ofSeconds(180);

    private static Path work;
    private static QemuGuest.Boot boot;

    @BeforeAll
    static void prepare() throws Exception {
        String arch = System.getProperty("os.arch");
        if (!arch.equals("amd64") && !arch.equals("x86_64"))
            skip("the QEMU guest of this test is x86-64 (Debian's 6.1 kernel under TCG); this machine is " + arch);
        work = Files.createTempDirectory("guestmem-qemu-");
        boot = QemuGuest.prepare(Path.of(System.getProperty("basedir", ".")), "vhost-user-blk-init", work);
        if (boot.unavailable() != null) skip("QEMU cannot be installed here: " + boot.unavailable());
    }

    private static void skip(String why) {
        System.out.println("SKIP (absent): QemuVhostUserBlkTest: " + why);
        Assumptions.abort(why);
    }

    @AfterAll
    static void cleanUp() throws IOException {
        if (work == null) return;
        try (var s = Files.walk(work)) {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    /** The pattern the guest writes: 16-byte lines, line k ("%015d\n" of k) at byte 16k. */
    private static byte[] pattern() {
        byte[] b = new byte[PATTERN_MIB << 20];
        for (int k = 0; k < b.length / 16; k++)
            System.arraycopy(String.format("%015d\n", k).getBytes(StandardCharsets.US_ASCII), 0, b, k * 16, 16);
        return b;
    }

    private static Path image(String name, byte[] start) throws IOException {
        Path img = work.resolve(name);
        Files.write(img, start);
        try (var ch = java.nio.channels.FileChannel.open(img, java.nio.file.StandardOpenOption.WRITE)) {
            ch.truncate(IMAGE);
            if (ch.size() < IMAGE) ch.write(java.nio.ByteBuffer.wrap(new byte[1]), IMAGE - 1);
        }
        return img;
    }

    @Test
    void theGuestWritesAndReadsBackAPatternWithODirectAndTheImageHoldsIt() throws Exception {
        Path img = image("pattern.img", new byte[0]);
        try (RawImage raw = RawImage.open(img.toString());
             VhostUserServer server = VhostUserServer.listen(work.resolve("pattern.sock"), () -> new VirtioBlk(raw, "guestmem-test", 128), s -> {}).start();
             QemuGuest guest = QemuGuest.start("pattern", boot, server.path(), work, "pattern", null)) {
            List<String> l = guest.await(x -> x.stream().anyMatch(y -> y.startsWith("GUESTMEM PATTERN")), BOOT, "the pattern check");
            System.out.println("qemu: " + String.join(" | ", l));
            assertTrue(l.stream().anyMatch(x -> x.startsWith("GUESTMEM PATTERN OK")), "the guest read back what it wrote:\n" + guest.report());
            assertFalse(l.stream().anyMatch(x -> x.contains(" BAD")), guest.report());
            assertEquals(0, guest.awaitExit(Duration.ofSeconds(60)), "QEMU exits when the guest powers off");
            VhostUserSession s = server.session();
            assertTrue(s.requests() >= 2 * PATTERN_MIB, s.requests() + " requests for " + PATTERN_MIB + " MiB written and read");
        }
        byte[] want = pattern(), got = new byte[want.length];
        try (var in = Files.newInputStream(img)) {
            assertEquals(want.length, in.readNBytes(got, 0, got.length));
        }
        for (int k = 0; k < want.length; k += 16)
            if (!java.util.Arrays.equals(got, k, k + 16, want, k, k + 16))
                throw new AssertionError("the image differs from the guest's pattern at byte " + k + ": '"
                        + new String(got, k, 15, StandardCharsets.ISO_8859_1) + "'");
    }

    /**
     * Migration while the guest runs I/O: the source QEMU sets VHOST_F_LOG_ALL and a log, the back-end marks
     * every page it writes (read data, status bytes, the used ring) and syncs it before it answers
     * GET_VRING_BASE; QEMU sends those pages again, so the guest restored from the file into a new QEMU and a
     * new back-end finds its buffers right and goes on from the ring index the old back-end stopped at.
     */
    @Test
    void aGuestMigratedToAFileDuringIoGoesOnInANewQemuAndTheLogNamedEveryPageTheBackendWrote() throws Exception {
        Path img = image("migrate.img", pattern());
        Path stream = work.resolve("migration.bin");
        Set<Long> written = ConcurrentHashMap.newKeySet(), logged = ConcurrentHashMap.newKeySet();
        List<String> before;
        long syncs, requestsBefore;
        try (RawImage raw = RawImage.open(img.toString())) {
            Recording[] dev = new Recording[1];
            try (VhostUserServer source = VhostUserServer.listen(work.resolve("source.sock"), () -> dev[0] = new Recording(new VirtioBlk(raw, "guestmem-test", 128), written),
                    s -> s.log().watch(logged::add)).start();
                 QemuGuest guest = QemuGuest.start("source", boot, source.path(), work, "loop", null)) {
                guest.await(l -> l.stream().filter(x -> x.endsWith(" OK")).count() >= 3, BOOT, "three I/O rounds before the migration");
                dev[0].session = source.session();
                try (Qmp qmp = new Qmp(guest)) {
                    qmp.execute("migrate", Map.of("uri", "exec:cat > " + stream));
                    String status;
                    long end = System.nanoTime() + Duration.ofSeconds(120).toNanos();
                    do {
                        Thread.sleep(100);
                        status = qmp.execute("query-migrate", null).path("status").asText();
                        if (System.nanoTime() > end) throw new AssertionError("the migration is still " + status + "\n" + guest.report());
                    } while (!status.equals("completed") && !status.equals("failed"));
                    assertEquals("completed", status, guest.report());
                    assertEquals("postmigrate", qmp.execute("query-status", null).path("status").asText());
                    qmp.execute("quit", null);
                }
                guest.awaitExit(Duration.ofSeconds(30));
                before = guest.lines();
                VhostUserSession s = source.session();
                syncs = s.log().syncs();
                requestsBefore = s.requests();
            }
            assertFalse(before.stream().anyMatch(x -> x.contains(" BAD")), String.join("\n", before));
            assertTrue(syncs > 0, "the back-end synced its writes into QEMU's log during the migration");
            assertFalse(written.isEmpty(), "the guest's reads went on during the migration (the back-end wrote while logging)");
            Set<Long> missing = new TreeSet<>(written);
            missing.removeAll(logged);
            assertTrue(missing.isEmpty(), missing.size() + " of the " + written.size() + " pages the back-end wrote while QEMU logged"
                    + " were not marked in the log, e.g. page " + (missing.isEmpty() ? "" : Long.toHexString(missing.iterator().next())));
            System.out.printf("qemu: migrated after %d requests; the back-end wrote %d pages during the migration, the log"
                    + " got %d pages in %d syncs%n", requestsBefore, written.size(), logged.size(), syncs);

            int lastBefore = lastIteration(before);
            try (VhostUserServer dest = VhostUserServer.listen(work.resolve("dest.sock"), () -> new VirtioBlk(raw, "guestmem-test", 128), s -> {}).start();
                 QemuGuest guest = QemuGuest.start("dest", boot, dest.path(), work, "loop", "exec:cat " + stream)) {
                List<String> after = guest.await(l -> l.stream().filter(x -> x.endsWith(" OK")).count() >= 3 || l.stream().anyMatch(x -> x.contains(" BAD")),
                        BOOT, "three I/O rounds after the restore");
                System.out.println("qemu: source's last round " + lastBefore + ", destination: " + String.join(" | ", after));
                assertFalse(after.stream().anyMatch(x -> x.contains(" BAD")), guest.report());
                assertFalse(after.stream().anyMatch(x -> x.startsWith("GUESTMEM UP")), "the destination resumed the guest, it did not boot it");
                assertTrue(firstIteration(after) >= lastBefore, "the guest's loop went on where it was: " + after);
                assertTrue(dest.session().requests() > 0);
            }
        }
    }

    /**
     * Memory hot-plug while the queue runs: a DIMM plugged through QMP reaches the back-end as ADD_MEM_REG (with
     * CONFIGURE_MEM_SLOTS) or as a whole new SET_MEM_TABLE (without: then the boot's table came that way too),
     * the regions are remapped as memslots under the running ring, and the guest's I/O goes on right; then the
     * DIMM is unplugged (REM_MEM_REG, or a table without it) and the I/O still goes on.
     */
    @ParameterizedTest
    @ValueSource(strings = {"ADD_MEM_REG", "SET_MEM_TABLE"})
    void memoryPluggedAndUnpluggedWhileTheQueueRunsReachesTheBackendAndIoGoesOn(String how) throws Exception {
        Path img = image("hotplug-" + how + ".img", pattern());
        try (RawImage raw = RawImage.open(img.toString());
             VhostUserServer server = VhostUserServer.listen(work.resolve("hotplug.sock"), () -> new VirtioBlk(raw, "guestmem-test", 128), s -> {
                 if (how.equals("SET_MEM_TABLE")) s.offerProtocolOnly(~Features.P_CONFIGURE_MEM_SLOTS);
             }).start();
             QemuGuest guest = QemuGuest.start("hotplug-" + how, boot, server.path(), work, "loop", null)) {
            guest.await(l -> l.stream().filter(x -> x.endsWith(" OK")).count() >= 2, BOOT, "two I/O rounds before the hot-plug");
            MemslotSet before = server.session().memory().guestMemory().memslots().current();
            try (Qmp qmp = new Qmp(guest)) {
                qmp.execute("object-add", Map.of("qom-type", "memory-backend-memfd", "id", "hp1", "size", 128L << 20, "share", true));
                qmp.execute("device_add", Map.of("driver", "pc-dimm", "id", "dimm1", "memdev", "hp1"));
            }
            long end = System.nanoTime() + Duration.ofSeconds(30).toNanos();
            while (server.session().memory().guestMemory().memslots().current().size() <= before.size()) {
                if (System.nanoTime() > end) throw new AssertionError("the back-end never got the DIMM (" + before.size() + " slots)\n" + guest.report());
                Thread.sleep(50);
            }
            int rounds = (int) guest.lines().stream().filter(x -> x.endsWith(" OK")).count();
            List<String> l = guest.await(x -> x.stream().filter(y -> y.endsWith(" OK")).count() >= rounds + 2 || x.stream().anyMatch(y -> y.contains(" BAD")),
                    BOOT, "two I/O rounds after the hot-plug");
            MemslotSet after = server.session().memory().guestMemory().memslots().current();
            System.out.println("qemu: hot-plug by " + how + ": " + before.size() + " -> " + after.size() + " memslots; " + String.join(" | ", l));
            assertFalse(l.stream().anyMatch(x -> x.contains(" BAD")), guest.report());
            assertEquals(before.size() + 1, after.size());

            // and out again: the guest's ACPI ejects the DIMM (its memory was never onlined), QEMU unmaps it
            try (Qmp qmp = new Qmp(guest)) {
                qmp.execute("device_del", Map.of("id", "dimm1"));
            }
            end = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            while (server.session().memory().guestMemory().memslots().current().size() > before.size()) {
                if (System.nanoTime() > end) throw new AssertionError("the back-end still has the DIMM\n" + guest.report());
                Thread.sleep(50);
            }
            int rounds2 = (int) guest.lines().stream().filter(x -> x.endsWith(" OK")).count();
            l = guest.await(x -> x.stream().filter(y -> y.endsWith(" OK")).count() >= rounds2 + 2 || x.stream().anyMatch(y -> y.contains(" BAD")),
                    BOOT, "two I/O rounds after the unplug");
            assertFalse(l.stream().anyMatch(x -> x.contains(" BAD")), guest.report());
            VhostUserSession s = server.session();
            if (how.equals("ADD_MEM_REG")) {
                assertEquals(0, s.messages(Request.SET_MEM_TABLE));
                assertEquals(after.size(), s.messages(Request.ADD_MEM_REG), "one ADD_MEM_REG per region");
                assertEquals(1, s.messages(Request.REM_MEM_REG), "the DIMM's REM_MEM_REG");
            } else {
                assertEquals(0, s.messages(Request.ADD_MEM_REG));
                assertTrue(s.messages(Request.SET_MEM_TABLE) >= 3, "the boot's table, the one with the DIMM and the one without");
            }
        }
    }

    private static int lastIteration(List<String> lines) {
        return lines.stream().filter(x -> x.startsWith("GUESTMEM ITER ")).mapToInt(QemuVhostUserBlkTest::iteration).max().orElse(-1);
    }

    private static int firstIteration(List<String> lines) {
        return lines.stream().filter(x -> x.startsWith("GUESTMEM ITER ")).mapToInt(QemuVhostUserBlkTest::iteration).min().orElse(-1);
    }

    private static int iteration(String line) {
        return Integer.parseInt(line.split(" ")[2]);
    }

    /**
     * The device, and a record of the pages each request wrote while the session logged, taken from the chain's
     * device-writable buffers (a second account, not the dirty bitmaps the log is made from).
     */
    private static final class Recording implements VhostUserDevice {
        private final VirtioBlk blk;
        private final Set<Long> written;
        private final long[] gpas = new long[1024], lens = new long[1024];
        volatile VhostUserSession session;

        Recording(VirtioBlk blk, Set<Long> written) {
            this.blk = blk;
            this.written = written;
        }

        @Override
        public long features() {
            return blk.features();
        }

        @Override
        public int queues() {
            return blk.queues();
        }

        @Override
        public byte[] config(int offset, int size) {
            return blk.config(offset, size);
        }

        @Override
        public int process(int queue, GuestMemory mem, DescriptorChain chain) {
            int n = blk.process(queue, mem, chain);
            VhostUserSession s = session;
            if (s != null && s.log().logging() && n > 0) {
                int k = chain.range(true, 0, n, gpas, lens);
                for (int i = 0; i < k; i++)
                    for (long p = gpas[i] >>> 12; p <= (gpas[i] + lens[i] - 1) >>> 12; p++) written.add(p);
            }
            return n;
        }
    }
}
