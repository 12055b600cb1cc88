package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.guestmem.cli.Main;
import io.guestmem.kvm.GuestCpu;
import io.guestmem.sys.Posix;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code guestmem demo --migrate}, held against its own JSON and what is known without it: the snapshot saved
 * exactly the pages the guest wrote (every page of every data slot, the code page of the boot slot), its lazy
 * restore read each saved page once and served every block, the restored and the migrated guest found every
 * page, the migration's page counts add up on both sides, and nothing is left behind (no destination process,
 * no temporary directory; the leak guard checks mappings, fds, locks and hugetlb pools).
 */
@org.junit.jupiter.api.extension.ExtendWith(LeakGuard.class)
class DemoMigrateTest {

    @BeforeAll
    static void kvm() {
        Assumptions.assumeTrue(Files.isReadable(Path.of("/dev/kvm")) && Files.isWritable(Path.of("/dev/kvm")),
                "no usable /dev/kvm on this machine");
    }

    @Test
    void migrateJsonIsTrue() throws Exception {
        Set<Path> tempBefore = demoTempDirs();
        StringWriter out = new StringWriter(), err = new StringWriter();
        int rc = Main.execute(new PrintWriter(out), new PrintWriter(err), "demo", "--migrate", "--json");
        System.out.println(out);
        assertEquals(0, rc, "demo --migrate exit code; stderr: " + err);
        JsonNode d = new ObjectMapper().readTree(out.toString());
        long pageSize = Posix.PAGE_SIZE;

        JsonNode s = d.get("snapshot");
        List<String> backings = new ArrayList<>();
        s.get("backings").forEach(b -> backings.add(b.asText()));
        assertEquals(List.of("anon", "thp", "memfd"), backings, "the restorable ones of the default backings");
        long dataPages = 0, zeroPages = 0, slotPages = 0, guestPages = 0;
        for (JsonNode slot : s.get("slots")) {
            long pages = slot.get("sizeBytes").asLong() / pageSize;
            dataPages += slot.get("dataPages").asLong();
            zeroPages += slot.get("zeroPages").asLong();
            slotPages += pages;
            if (slot.get("id").asInt() == 0) {
                // the boot slot: the guest's code page (and x86's GDT in it)
                assertTrue(slot.get("dataPages").asLong() >= 1, slot.toString());
            } else {
                assertEquals(pages, slot.get("dataPages").asLong(), "the guest wrote a non-zero value into every page: " + slot);
                guestPages += slot.get("sizeBytes").asLong() / GuestCpu.GUEST_PAGE;
            }
        }
        assertTrue(s.get("pagesSaved").asLong() > 0, s.toString());
        assertEquals(dataPages, s.get("pagesSaved").asLong(), "the writer's count is the file's own manifest's");
        assertEquals(zeroPages, s.get("zeroPages").asLong());
        assertEquals(slotPages, s.get("pagesSaved").asLong() + s.get("zeroPages").asLong() + s.get("untouchedPages").asLong(),
                "every page of every slot is saved, zero or untouched");
        assertTrue(s.get("bytesWritten").asLong() > s.get("pagesSaved").asLong() * pageSize, "the pages and the records' heads");

        // the lazy restore: complete, every block served once by one of its three paths, each saved page read once
        assertTrue(s.get("restoreMs").asDouble() >= 0, s.toString());
        long served = s.get("blocksServed").asLong(), prefetched = s.get("prefetched").asLong(),
                accessor = s.get("accessorServed").asLong(), faults = s.get("faultsServed").asLong();
        assertEquals(0, s.get("failures").asLong(), s.toString());
        assertEquals(served, s.get("dataBlocks").asLong() + s.get("zeroBlocks").asLong(), "every block arrived: " + s);
        assertTrue(prefetched + accessor <= served, s.toString());
        assertTrue(faults >= served - prefetched - accessor, "a block the prefetcher and the accessors did not bring came through a fault: " + s);
        assertEquals(s.get("pagesSaved").asLong() * pageSize, s.get("bytesRead").asLong(), "each saved page read once: " + s);
        if (faults > 0) assertTrue(s.get("firstFaultMicros").asDouble() > 0, s.toString());
        assertVerified(s.get("verified"), guestPages);

        JsonNode m = d.get("migration");
        int rounds = m.get("rounds").asInt();
        assertTrue(rounds >= 1, m.toString());
        JsonNode perRound = m.get("pagesPerRound");
        assertEquals(rounds + 1, perRound.size(), "the pre-copy rounds and the last one: " + m);
        long sum = 0;
        for (JsonNode n : perRound) sum += n.asLong();
        assertEquals(sum, m.get("pagesSent").asLong(), m.toString());
        assertTrue(perRound.get(0).asLong() >= s.get("pagesSaved").asLong(), "the full round sends every page that holds data: " + m);
        assertTrue(m.get("bytesSent").asLong() > m.get("pagesSent").asLong() * pageSize / 2, m.toString());
        assertEquals(m.get("pagesSent").asLong(), m.get("pagesReceived").asLong(), "the destination counted what the source sent");
        assertEquals(slotPages, m.get("checksumChecked").asLong(), "every page of every slot compared");
        assertEquals(slotPages, m.get("checksumAgree").asLong(), m.toString());
        assertTrue(m.get("downtimeMs").asDouble() >= 0 && m.get("downtimeMs").asDouble() <= m.get("totalMs").asDouble(), m.toString());
        assertTrue(m.get("guestPasses").asLong() >= 1, "the guest wrote during pre-copy: " + m);
        assertTrue(m.get("stopReason").isTextual(), m.toString());
        assertVerified(m.get("verified"), guestPages);

        long pid = m.get("destinationPid").asLong();
        assertTrue(ProcessHandle.of(pid).map(p -> !p.isAlive()).orElse(true), "the destination process " + pid + " is gone");
        // (another process's demo may have one meanwhile: a directory of this run's would never go)
        Set<Path> left = new TreeSet<>(demoTempDirs());
        left.removeAll(tempBefore);
        for (long deadline = System.nanoTime() + 30_000_000_000L; !left.isEmpty() && System.nanoTime() < deadline; ) {
            Thread.sleep(500);
            left.retainAll(demoTempDirs());
        }
        assertEquals(Set.of(), left, "the snapshot's temporary directory is deleted");
    }

    @Test
    void theTableShowsTheSame() {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int rc = Main.execute(new PrintWriter(out), new PrintWriter(err), "demo", "--migrate", "--backings", "anon,pfnmap",
                "--slot-size", "2");
        String table = out.toString();
        System.out.println(table);
        assertEquals(0, rc, "stderr: " + err);
        long guestPages = (2L << 20) / GuestCpu.GUEST_PAGE;
        for (String line : List.of("note: migrate: pfnmap left out:", "snapshot: ", "lazy restore: complete in ",
                "verified (restored guest): " + guestPages + "/" + guestPages + " ", "migration: ", "migration checksums: ",
                "verified (migrated guest): " + guestPages + "/" + guestPages + " "))
            assertTrue(table.lines().anyMatch(l -> l.startsWith(line)), "a line starting '" + line + "' in\n" + table);
    }

    @Test
    void noRestorableBackingIsAUsageError() {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int rc = Main.execute(new PrintWriter(out), new PrintWriter(err), "demo", "--migrate", "--backings", "pfnmap");
        assertEquals(2, rc, err.toString());
        assertEquals(1, err.toString().strip().lines().count(), err.toString());
        assertTrue(err.toString().contains("--migrate needs at least one of anon, thp, memfd"), err.toString());
    }

    private static void assertVerified(JsonNode v, long guestPages) {
        assertTrue(v.get("total").asLong() > 0, v.toString());
        assertEquals(guestPages, v.get("total").asLong(), "every guest page of every data slot checked: " + v);
        assertEquals(v.get("total").asLong(), v.get("agree").asLong(), v.toString());
        assertEquals(0, v.get("disagreements").size(), v.toString());
    }

    private static Set<Path> demoTempDirs() throws IOException {
        try (Stream<Path> s = Files.list(Path.of(System.getProperty("java.io.tmpdir")))) {
            return s.filter(p -> p.getFileName().toString().startsWith("guestmem-demo-")).collect(java.util.stream.Collectors.toCollection(TreeSet::new));
        }
    }
}
