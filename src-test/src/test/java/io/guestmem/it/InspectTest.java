package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.guestmem.cli.Main;
import io.guestmem.host.HostRegion;
import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Maps;
import io.guestmem.procfs.MapsEntry;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.procfs.Smaps;
import io.guestmem.procfs.Vma;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * {@code guestmem inspect} against the kernel: the JSON the command prints for memory this test maps is
 * compared with pagemap and kpageflags read independently by the test, before and after the command ran.
 */
@org.junit.jupiter.api.extension.ExtendWith(LeakGuard.class)
class InspectTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static final long MIB = 1 << 20;
    static final ObjectMapper JSON = new ObjectMapper();

    record Run(int code, String out, String err) {
        JsonNode json() throws Exception {
            return JSON.readTree(out);
        }
    }

    static Run inspect(String... args) {
        StringWriter o = new StringWriter(), e = new StringWriter();
        String[] all = new String[args.length + 1];
        all[0] = "inspect";
        System.arraycopy(args, 0, all, 1, args.length);
        int code = Main.execute(new PrintWriter(o), new PrintWriter(e), all);
        return new Run(code, o.toString(), e.toString());
    }

    static String range(long start, long end) {
        return Long.toHexString(start) + "-0x" + Long.toHexString(end);
    }

    static void assumeRoot() {
        Assumptions.assumeTrue(ProcStatus.self().hasEffective(ProcStatus.CAP_SYS_ADMIN),
                "needs CAP_SYS_ADMIN for pfns and /proc/kpageflags");
    }

    /** The test's own reading of a range: pagemap entries, pfns, kpageflags names. */
    record KernelView(long[] raw, long[] pfns, List<Set<String>> flags) {
        static KernelView read(int pid, long start, int pages) {
            try (Pagemap pm = pid == 0 ? Pagemap.openSelf() : Pagemap.open(pid); KPageFlags kpf = KPageFlags.open()) {
                long[] raw = pm.read(start, pages);
                long[] pfns = new long[pages];
                List<Set<String>> flags = new ArrayList<>();
                for (int i = 0; i < pages; i++) {
                    pfns[i] = pm.pfnOf(raw[i]);
                    Set<String> names = null;
                    if (pfns[i] >= 0) {
                        names = new TreeSet<>();
                        for (KPageFlag f : kpf.flags(pfns[i])) names.add(f.name()); // one read per page: the oracle may be slow
                    }
                    flags.add(names);
                }
                return new KernelView(raw, pfns, flags);
            }
        }
    }

    /**
     * Every page of the command's JSON agrees with the kernel as the test read it just before or just after
     * the command (LRU/ACTIVE/REFERENCED may flip in between; the same page must match one reading wholly).
     */
    static void assertPagesMatch(JsonNode pages, long start, KernelView before, KernelView after) {
        for (int i = 0; i < pages.size(); i++) {
            JsonNode p = pages.get(i);
            assertEquals(Fmt.hex(start + i * PAGE), p.get("hva").asText());
            boolean ok = false;
            String why = "";
            for (KernelView k : List.of(before, after)) {
                boolean present = PagemapEntry.isPresent(k.raw[i]);
                String pfn = k.pfns[i] >= 0 ? Fmt.hex(k.pfns[i]) : null;
                Set<String> flags = null;
                if (p.get("flags").isArray()) {
                    flags = new TreeSet<>();
                    for (JsonNode f : p.get("flags")) flags.add(f.asText());
                }
                boolean same = p.get("present").asBoolean() == present
                        && (p.get("pfn").isNull() ? pfn == null : p.get("pfn").asText().equals(pfn))
                        && java.util.Objects.equals(flags, k.flags.get(i));
                if (same) ok = true;
                else why += " kernel: present=" + present + " pfn=" + pfn + " flags=" + k.flags.get(i) + ";";
            }
            assertTrue(ok, "page " + i + " " + p + " vs" + why);
            if (!p.get("present").asBoolean()) {
                assertTrue(p.get("pfn").isNull(), "no pfn for a page that is not present: " + p);
                assertTrue(p.get("refcounted").isNull(), p.toString());
            } else {
                assertFalse(p.get("pfn").asText().equals("0x0"), "never pfn 0: " + p);
            }
        }
    }

    static JsonNode vmaAt(JsonNode doc, long start) {
        for (JsonNode v : doc.get("vmas")) if (v.get("start").asText().equals(Fmt.hex(start))) return v;
        throw new AssertionError("no VMA row starting at " + Fmt.hex(start) + " in " + doc.get("vmas"));
    }

    @Test
    void anonymousRegionWrittenPageByPage() throws Exception {
        assumeRoot();
        int written = 48, untouched = 16, zero = 8;
        long size = (written + untouched + zero) * PAGE;
        try (HostRegion r = HostRegion.anonymous(size).create()) {
            MemorySegment s = r.segment();
            for (int i = 0; i < written; i++) s.set(ValueLayout.JAVA_LONG, i * PAGE, 0x5a5a0000L + i);
            long sum = 0; // reading private anonymous memory maps the shared zero page
            for (int i = written + untouched; i < written + untouched + zero; i++) sum += s.get(ValueLayout.JAVA_BYTE, i * PAGE);
            assertEquals(0, sum);
            int pages = written + untouched + zero;
            KernelView before = KernelView.read(0, r.address(), pages);
            Run run = inspect("--pages", "--json", "--range", range(r.address(), r.address() + size));
            KernelView after = KernelView.read(0, r.address(), pages);
            assertEquals(0, run.code(), run.err());
            assertEquals("", run.err());
            JsonNode doc = run.json();
            assertEquals(Posix.getpid(), doc.get("pid").asInt());
            assertTrue(doc.get("pfnVisible").asBoolean());
            assertEquals(PAGE, doc.get("pageSize").asLong());
            JsonNode pagesJson = doc.get("pages");
            assertEquals(pages, pagesJson.size(), "one entry per page of the range");
            assertPagesMatch(pagesJson, r.address(), before, after);

            for (int i = 0; i < pages; i++) {
                JsonNode p = pagesJson.get(i);
                assertEquals(io.guestmem.cli.PageClassification.levelLabel(PAGE), p.get("level").asText(), p.toString());
                if (i < written) {
                    assertTrue(p.get("present").asBoolean(), p.toString());
                    assertTrue(p.get("refcounted").asBoolean(), "an anonymous page is refcounted: " + p);
                    assertTrue(p.get("flags").toString().contains("\"ANON\""), p.toString());
                } else if (i < written + untouched) {
                    assertFalse(p.get("present").asBoolean(), "never touched: " + p);
                    assertTrue(p.get("flags").isNull(), p.toString());
                } else {
                    // A read fault maps the shared zero page, or (a kernel's choice: this project's x86 host on
                    // 2026-12-03) a private anonymous page; the entry must say which, as kpageflags does.
                    String f = p.get("flags").toString();
                    assertTrue(f.contains("\"ZERO_PAGE\"") || f.contains("\"ANON\""), "read-only touch maps the zero page or an anonymous page: " + p);
                    if (!f.contains("\"ZERO_PAGE\"")) System.out.println("INFO this kernel mapped no zero page on a read fault: " + p);
                    assertTrue(p.get("refcounted").asBoolean(), "kvm_pfn_to_refcounted_page's zero-page exception: " + p);
                }
            }
            JsonNode vma = vmaAt(doc, r.address());
            assertEquals("anon", vma.get("backing").asText());
            assertEquals(size, vma.get("sizeBytes").asLong());
            assertEquals(written + zero, vma.get("presentPages").asLong());
            long zeroPagesSeen = 0;
            for (int i = written + untouched; i < pages; i++)
                if (pagesJson.get(i).get("flags").toString().contains("\"ZERO_PAGE\"")) zeroPagesSeen++;
            assertTrue(zeroPagesSeen == zero || zeroPagesSeen == 0, "the kernel maps the zero page on every read fault or on none");
            assertEquals(zeroPagesSeen, vma.get("zeroPages").asLong());
            assertEquals(0, vma.get("hugePages").asLong());
            assertTrue(vma.get("pagemapView").asBoolean());
        }
    }

    @Test
    void thpRegionReportsTwoMegabyteLevels() throws Exception {
        assumeRoot();
        // Four THPs of the PMD size (sysfs hpage_pmd_size: 2M on x86-64 and 4K arm64, 32M on 16K arm64).
        long pmd = Long.parseLong(java.nio.file.Files.readString(
                java.nio.file.Path.of("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")).trim());
        String pmdLabel = io.guestmem.cli.PageClassification.levelLabel(pmd);
        long size = 4 * pmd;
        try (HostRegion r = HostRegion.thp(size).create()) {
            MemorySegment s = r.segment();
            for (long o = 0; o < size; o += PAGE) s.set(ValueLayout.JAVA_BYTE, o, (byte) 1);
            int pages = (int) (size / PAGE);
            KernelView before = KernelView.read(0, r.address(), pages);
            Run run = inspect("--pages", "--json", "--range", range(r.address(), r.address() + size));
            KernelView after = KernelView.read(0, r.address(), pages);
            assertEquals(0, run.code(), run.err());
            JsonNode doc = run.json();
            JsonNode pagesJson = doc.get("pages");
            assertEquals(pages, pagesJson.size());
            assertPagesMatch(pagesJson, r.address(), before, after);
            Vma smaps = Smaps.vmaOf(r.address());
            long thpPages = 0;
            for (int i = 0; i < pages; i++) {
                JsonNode p = pagesJson.get(i);
                boolean thp = after.flags.get(i) != null && after.flags.get(i).contains("THP");
                if (pmdLabel.equals(p.get("level").asText())) {
                    thpPages++;
                    assertTrue(thp, "a PMD-level page must be a THP page in kpageflags: " + p);
                }
                if (p.get("present").asBoolean()) assertTrue(p.get("refcounted").asBoolean(), "THP pages are refcounted via the head: " + p);
            }
            // Whether THPs exist is the kernel's answer (smaps, read by the test), not the command's.
            Assumptions.assumeTrue(smaps.anonHugePages() > 0,
                    "the kernel gave this MADV_HUGEPAGE region no THP (fragmented memory?)");
            assertEquals(0, thpPages % (pmd / PAGE), "whole PMD mappings");
            assertEquals(smaps.anonHugePages(), thpPages * PAGE, "smaps AnonHugePages agrees with the PMD-level pages");
            JsonNode vma = vmaAt(doc, r.address());
            assertEquals("thp", vma.get("backing").asText());
            assertEquals(thpPages, vma.get("hugePages").asLong());
            assertEquals(pages, vma.get("presentPages").asLong());
            System.out.println("THP region: " + thpPages + " of " + pages + " pages mapped at 2M");
        }
    }

    @Test
    void pfnmapRangeHasNoPageView() throws Exception {
        io.guestmem.host.Pfnmap.unavailableReason().ifPresent(why -> {
            System.out.println("SKIP pfnmapRangeHasNoPageView: " + why);
            org.junit.jupiter.api.Assumptions.abort(why);
        });
        try (HostRegion ring = HostRegion.perfRing(8).create()) {
            Run run = inspect("--pages", "--json", "--range", range(ring.address(), ring.address() + ring.size()));
            assertEquals(0, run.code(), run.err());
            JsonNode doc = run.json();
            JsonNode vma = vmaAt(doc, ring.address());
            assertEquals("pfnmap", vma.get("backing").asText());
            assertTrue(vma.get("pfnmap").asBoolean());
            assertFalse(vma.get("pagemapView").asBoolean());
            assertTrue(vma.get("presentPages").isNull(), "no invented counts: " + vma);
            assertEquals(0, doc.get("pages").size(), "no invented pages or pfns: " + doc.get("pages"));
            Run text = inspect("--range", range(ring.address(), ring.address() + ring.size()));
            assertTrue(text.out().contains("no view"), text.out());
        }
    }

    @Test
    void anotherProcess() throws Exception {
        assumeRoot();
        Process p = new ProcessBuilder("sleep", "30").start();
        try {
            int pid = (int) p.pid();
            MapsEntry stack = null;
            for (int tries = 0; stack == null && tries < 100; tries++) {
                for (MapsEntry e : Maps.read(pid)) if (e.name().equals("[stack]")) stack = e;
                if (stack == null) Thread.sleep(20); // exec not done yet
            }
            assertNotNull(stack, "sleep has a [stack]");
            Run all = inspect("--pid", Integer.toString(pid), "--json");
            assertEquals(0, all.code(), all.err());
            JsonNode doc = all.json();
            assertEquals(pid, doc.get("pid").asInt());
            assertNull(doc.get("pages"), "no pages without --pages");
            assertTrue(doc.get("vmas").toString().contains("/usr/bin/sleep") || doc.get("vmas").toString().contains("coreutils"),
                    doc.get("vmas").toString());
            vmaAt(doc, stack.start());

            int pages = (int) (stack.size() / PAGE);
            KernelView before = KernelView.read(pid, stack.start(), pages);
            Run run = inspect("--pid", Integer.toString(pid), "--pages", "--json", "--range",
                    range(stack.start(), stack.end()));
            KernelView after = KernelView.read(pid, stack.start(), pages);
            assertEquals(0, run.code(), run.err());
            JsonNode st = run.json();
            assertEquals("stack", vmaAt(st, stack.start()).get("backing").asText());
            assertPagesMatch(st.get("pages"), stack.start(), before, after);
            assertTrue(vmaAt(st, stack.start()).get("presentPages").asLong() > 0);
        } finally {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void processThatDoesNotExistIsOneLine() throws Exception {
        Process p = new ProcessBuilder("true").start();
        p.waitFor(10, TimeUnit.SECONDS);
        int pid = (int) p.pid(); // exited and reaped: /proc/<pid> is gone
        Assumptions.assumeFalse(java.nio.file.Files.exists(java.nio.file.Path.of("/proc/" + pid)), "pid reused already");
        Run run = inspect("--pid", Integer.toString(pid));
        assertEquals(1, run.code());
        assertEquals(1, run.err().lines().count(), run.err());
        assertTrue(run.err().contains("no process " + pid), run.err());
        assertEquals("", run.out());
    }
}
