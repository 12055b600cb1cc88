package io.guestmem.it;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.LocalDate;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The figures the reliability tests measured, written to {@code target/reliability.md} as one markdown table
 * (pasted into the README's reliability section). Every {@link #put} rewrites the file, so the table is there
 * whichever test ran last. Rows are keyed by area and figure; rows of areas this run did not touch are kept
 * from the previous file (with the date they were measured), so running one test class updates its rows only.
 */
public final class ReliabilityReport {
    private ReliabilityReport() {}

    private static final String HEADER = "| area | figure | value | measured |";
    private static final Map<String, String[]> rows = new LinkedHashMap<>();
    private static boolean loaded;

    /** Records (or replaces) one figure and rewrites the report. */
    public static synchronized void put(String area, String figure, Object value) {
        load();
        rows.put(area + "\u0000" + figure, new String[] {area, figure, String.valueOf(value), LocalDate.now().toString()});
        write();
    }

    /** The report file: {@code <module>/target/reliability.md} (surefire runs with the module as basedir). */
    public static Path file() {
        return Path.of(System.getProperty("basedir", "."), "target", "reliability.md");
    }

    private static void load() {
        if (loaded) return;
        loaded = true;
        Path f = file();
        if (!Files.exists(f)) return;
        try {
            for (String line : Files.readAllLines(f)) {
                if (!line.startsWith("| ") || line.equals(HEADER) || line.startsWith("|---")) continue;
                String[] c = line.substring(2, line.length() - 2).split(" \\| ", -1);
                if (c.length == 4) rows.putIfAbsent(c[0] + "\u0000" + c[1], c);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void write() {
        List<String> out = new ArrayList<>();
        out.add("<!-- written by src-test (io.guestmem.it.ReliabilityReport); rows keep the date they were measured -->");
        out.add(HEADER);
        out.add("|---|---|---|---|");
        rows.values().stream().sorted((a, b) -> a[0].compareTo(b[0]))   // stable: figures keep their order per area
                .forEach(r -> out.add("| " + String.join(" | ", r) + " |"));
        try {
            Files.createDirectories(file().getParent());
            Files.write(file(), out);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
