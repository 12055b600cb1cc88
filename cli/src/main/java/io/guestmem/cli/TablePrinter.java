package io.guestmem.cli;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;

/**
 * An aligned text table. Either buffered (add rows, then {@link #print}: widths fit the widest cell) or
 * streamed ({@link #stream}: the header and each row print at once, with the columns' minimum widths,
 * for listings too long to hold, such as every page of a process).
 */
public final class TablePrinter {
    /** A column: its header, whether numbers align right, and a minimum width. */
    public record Column(String header, boolean right, int minWidth) {
        public static Column left(String header) {
            return new Column(header, false, 0);
        }

        public static Column right(String header) {
            return new Column(header, true, 0);
        }

        public Column width(int w) {
            return new Column(header, right, w);
        }
    }

    private static final String GAP = "  ";
    private final List<Column> columns;
    private final List<String[]> rows = new ArrayList<>();
    private PrintWriter streamTo;

    public TablePrinter(Column... columns) {
        if (columns.length == 0) throw new IllegalArgumentException("a table needs at least one column");
        this.columns = List.of(columns);
    }

    /** Adds a row (buffered mode) or prints it (streamed mode). Cells are strings; null prints as "-". */
    public TablePrinter row(Object... cells) {
        if (cells.length != columns.size())
            throw new IllegalArgumentException("row has " + cells.length + " cells for " + columns.size() + " columns");
        String[] r = new String[cells.length];
        for (int i = 0; i < cells.length; i++) r[i] = cells[i] == null ? "-" : cells[i].toString();
        if (streamTo != null) printRow(streamTo, r, minWidths());
        else rows.add(r);
        return this;
    }

    /** Prints the header and the buffered rows, each column as wide as its widest cell. */
    public void print(PrintWriter out) {
        int[] w = minWidths();
        for (String[] r : rows) for (int i = 0; i < r.length; i++) w[i] = Math.max(w[i], r[i].length());
        printRow(out, headers(), w);
        for (String[] r : rows) printRow(out, r, w);
        out.flush();
    }

    /** Prints the header now and every later {@link #row} at once, with the minimum widths. */
    public TablePrinter stream(PrintWriter out) {
        if (!rows.isEmpty()) throw new IllegalStateException("rows were already buffered");
        streamTo = out;
        printRow(out, headers(), minWidths());
        return this;
    }

    private String[] headers() {
        return columns.stream().map(Column::header).toArray(String[]::new);
    }

    private int[] minWidths() {
        int[] w = new int[columns.size()];
        for (int i = 0; i < w.length; i++) w[i] = Math.max(columns.get(i).minWidth(), columns.get(i).header().length());
        return w;
    }

    private void printRow(PrintWriter out, String[] cells, int[] w) {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < cells.length; i++) {
            boolean last = i == cells.length - 1;
            String c = cells[i];
            int pad = Math.max(0, w[i] - c.length());
            if (columns.get(i).right()) b.append(" ".repeat(pad)).append(c);
            else b.append(c).append(last ? "" : " ".repeat(pad));
            if (!last) b.append(GAP);
        }
        // No trailing blanks: the last column is left-aligned text without padding, or right-aligned.
        out.println(b.toString().stripTrailing());
    }
}
