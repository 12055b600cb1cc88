package io.guestmem.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/** The command's contract with its user: --help everywhere, one line and exit 2 for bad arguments. */
class CommandLineTest {
    record Run(int code, String out, String err) {}

    static Run run(String... args) {
        StringWriter o = new StringWriter(), e = new StringWriter();
        int code = Main.execute(new PrintWriter(o), new PrintWriter(e), args);
        return new Run(code, o.toString(), e.toString());
    }

    @ParameterizedTest
    @ValueSource(strings = {"--help", "inspect --help", "demo --help", "help inspect", "help demo", "inspect -h"})
    void helpWorksOnEverySubcommand(String args) {
        Run r = run(args.split(" "));
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("Usage: guestmem"), r.out());
        assertEquals("", r.err());
    }

    @Test
    void inspectHelpNamesItsOptions() {
        String out = run("inspect", "--help").out();
        for (String o : List.of("--pid", "--range", "--pages", "--json")) assertTrue(out.contains(o), o + " in " + out);
    }

    @ParameterizedTest
    @ValueSource(strings = {"inspect --range zz", "inspect --range 2000-1000", "inspect --range 1000-1000",
            "inspect --range 0x1000-", "inspect --range -0x1000", "inspect --range 1-2-3", "inspect --range 11112222333344445-1",
            "inspect --range 0xg000-0x2000", "inspect --pid abc", "inspect --pid -5", "inspect --pid 0",
            "inspect --bogus", "inspect extra", "nosuchcommand", "inspect --range"})
    void badArgumentsExit2WithOneLine(String args) {
        Run r = run(args.split(" "));
        assertEquals(2, r.code(), r.err());
        assertEquals(1, r.err().lines().count(), "exactly one line on stderr: " + r.err());
        assertTrue(r.err().startsWith("guestmem: "), r.err());
        assertEquals("", r.out());
    }

    @Test
    void vhostUserBlkHelpNamesItsOptions() {
        String out = run("vhost-user-blk", "--help").out();
        for (String o : List.of("--socket", "--image", "--serial", "--queue-size", "--once")) assertTrue(out.contains(o), o + " in " + out);
    }

    /** A bad image or queue size is refused before the socket is created. */
    @ParameterizedTest
    @ValueSource(strings = {"vhost-user-blk --socket /tmp/guestmem-cli-test.sock", "vhost-user-blk --image /etc/hostname",
            "vhost-user-blk --socket /tmp/guestmem-cli-test.sock --image /nonexistent/img",
            "vhost-user-blk --socket /tmp/guestmem-cli-test.sock --image /etc --queue-size 128",
            "vhost-user-blk --socket /tmp/guestmem-cli-test.sock --image /etc/hostname --queue-size 100"})
    void vhostUserBlkBadArgumentsExit2(String args) {
        Run r = run(args.split(" "));
        assertEquals(2, r.code(), r.err());
        assertEquals(1, r.err().lines().count(), "exactly one line on stderr: " + r.err());
        assertFalse(java.nio.file.Files.exists(java.nio.file.Path.of("/tmp/guestmem-cli-test.sock")));
    }

    /** A backing name that is not one is a usage error before anything is mapped, naming the valid ones. */
    @ParameterizedTest
    @ValueSource(strings = {"an", "anon,an", "hugetlb", "hugetlb-3M", "anon,,memfd", "ANON", "fd"})
    void unknownBackingIsAUsageErrorListingTheKnownOnes(String list) {
        Run r = run("demo", "--backings", list);
        assertEquals(2, r.code(), r.err());
        assertEquals(1, r.err().lines().count(), "exactly one line on stderr: " + r.err());
        assertTrue(r.err().startsWith("guestmem: ") && r.err().contains("unknown backing '"), r.err());
        for (DemoBacking b : DemoBacking.KNOWN) assertTrue(r.err().contains(b.label()), b.label() + " listed in: " + r.err());
        assertEquals("", r.out());
    }

    @Test
    void backingsParseToTheBackingType() {
        DemoCommand d = new DemoCommand();
        new picocli.CommandLine(d).parseArgs("--backings", "anon,hugetlb-64K,hugetlb-1G,guest_memfd,memfd,anon");
        assertEquals(List.of(DemoBacking.of(io.guestmem.host.Backing.ANON), DemoBacking.hugetlb(64L << 10),
                new DemoBacking(io.guestmem.host.Backing.HUGETLB_1G, 1L << 30), DemoBacking.of(io.guestmem.host.Backing.GUEST_MEMFD),
                DemoBacking.of(io.guestmem.host.Backing.MEMFD), DemoBacking.of(io.guestmem.host.Backing.ANON)), d.backings);
        assertEquals(io.guestmem.host.Backing.HUGETLB_OTHER, d.backings.get(1).kind());
        DemoCommand defaults = new DemoCommand();
        new picocli.CommandLine(defaults).parseArgs();
        assertEquals(List.of("anon", "thp", "hugetlb-2M", "memfd", "guest_memfd", "pfnmap"),
                defaults.backings.stream().map(DemoBacking::label).toList());
        // Every known name parses back to itself, and the help names them all.
        for (DemoBacking b : DemoBacking.KNOWN) assertEquals(b, DemoBacking.parse(b.label()));
        String help = run("demo", "--help").out().replaceAll("\\s+", " "); // the help wraps its lines
        assertTrue(help.contains("Known: " + DemoBacking.names() + "."), help);
    }

    @Test
    void rangeParsesHexWithAndWithout0x() {
        assertEquals(new AddressRange(0x7f0000000000L, 0x7f0000200000L), AddressRange.parse("7f0000000000-0x7f0000200000"));
        assertEquals(new AddressRange(0x1000, 0x2000), AddressRange.parse("0X1000-2000"));
        AddressRange top = AddressRange.parse("ffffffffff600000-ffffffffffffffff");
        assertEquals(0xffffffffff600000L, top.start());
        assertEquals(new AddressRange(0x1000, 0x3000), AddressRange.parse("1234-2001").pageAligned(4096));
    }

    @Test
    void progressIsSilentWhenNotOnATerminal() {
        // Tests run with redirected stdout: the helper must draw nothing.
        assertFalse(Progress.enabled());
        try (Progress p = Progress.start("x", 100, "pages")) {
            assertFalse(p.shown());
            p.step(50);
        }
    }
}
