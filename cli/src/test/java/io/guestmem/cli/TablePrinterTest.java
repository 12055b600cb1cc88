package io.guestmem.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.guestmem.cli.TablePrinter.Column;
import java.io.PrintWriter;
import java.io.StringWriter;
import org.junit.jupiter.api.Test;

class TablePrinterTest {
    @Test
    void alignsColumnsToTheWidestCell() {
        StringWriter w = new StringWriter();
        new TablePrinter(Column.left("NAME"), Column.right("SIZE"), Column.left("NOTE"))
                .row("anon", "4K", "x").row("hugetlb-2M", "1024M", null).print(new PrintWriter(w));
        assertEquals("""
                NAME         SIZE  NOTE
                anon           4K  x
                hugetlb-2M  1024M  -
                """, w.toString());
    }

    @Test
    void streamsRowsWithMinimumWidths() {
        StringWriter w = new StringWriter();
        PrintWriter pw = new PrintWriter(w);
        TablePrinter t = new TablePrinter(Column.left("A").width(3), Column.right("B").width(4)).stream(pw);
        t.row("x", "1");
        pw.flush();
        assertEquals("A       B\nx       1\n", w.toString());
        assertThrows(IllegalArgumentException.class, () -> t.row("only one"));
    }

    @Test
    void humanSizes() {
        assertEquals("0", InspectCommand.human(0));
        assertEquals("4K", InspectCommand.human(4096));
        assertEquals("2M", InspectCommand.human(2 << 20));
        assertEquals("1.5G", InspectCommand.human(3L << 29));
        assertEquals("100B", InspectCommand.human(100));
    }
}
