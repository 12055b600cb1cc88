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
