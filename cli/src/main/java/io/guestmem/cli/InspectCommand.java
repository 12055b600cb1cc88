package io.guestmem.cli;

import com.fasterxml.jackson.core.JsonGenerator;
import io.guestmem.cli.TablePrinter.Column;
import io.guestmem.sys.Posix;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code guestmem inspect}: the kernel's page-types, for guest memory work. */
@Command(name = "inspect", mixinStandardHelpOptions = true,
        description = {"Show a process's memory as the kernel sees it: VMAs, present pages, pfns, mapping levels, flags.",
                "Default: one row per VMA. Counts come from PAGEMAP_SCAN, pfns from pagemap, flags from kpageflags.",
                "A pfn the kernel hides (no CAP_SYS_ADMIN) is shown as 'hidden' (JSON: null), never as 0."},
        footer = {"", "Exit status: 0 ok, 1 the kernel refused or the process is gone, 2 bad arguments."})
final class InspectCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--pid", paramLabel = "PID", description = "Process to inspect (default: this one). Needs "
            + "PTRACE_MODE_READ on it, as the kernel asks for its pagemap.")
    Integer pid;

    @Option(names = "--range", paramLabel = "START-END", converter = AddressRange.Converter.class,
            description = "Only [START, END), hex addresses with or without 0x (widened to whole pages).")
    AddressRange range;

    @Option(names = "--pages", description = "List every page: hva, present, pfn, level (4K/2M/1G), refcounted, flags.")
    boolean pages;

    @Option(names = "--json", description = "Print one JSON document instead of tables.")
    boolean json;

    @Override
    public Integer call() {
        int target = pid == null ? Posix.getpid() : pid;
        if (target <= 0) throw new UsageException("--pid must be a positive process id, got " + target);
        AddressRange r = (range == null ? AddressRange.ALL : range).pageAligned(Posix.PAGE_SIZE);
        PrintWriter out = spec.commandLine().getOut();
        try (ProcessMemoryView view = ProcessMemoryView.open(target)) {
            List<ProcessMemoryView.Selected> selected = view.vmas(r);
            List<InspectReport.Vma> rows = new ArrayList<>(selected.size());
            try (Progress p = Progress.start("VMAs", selected.size(), "VMAs")) {
                for (ProcessMemoryView.Selected s : selected) {
                    rows.add(view.summarize(s));
                    p.step(1);
                }
            }
            if (json) writeJson(out, view, selected, rows);
            else writeText(out, view, r, selected, rows);
        }
        out.flush();
        return 0;
    }

    private void writeJson(PrintWriter out, ProcessMemoryView view, List<ProcessMemoryView.Selected> selected,
                           List<InspectReport.Vma> rows) {
        try (JsonGenerator g = Json.generator(out)) {
            g.writeStartObject();
            g.writeNumberField("pid", view.pid);
            g.writeBooleanField("pfnVisible", view.pfnVisible());
            g.writeNumberField("pageSize", Posix.PAGE_SIZE);
            g.writeFieldName("vmas");
            g.writeObject(rows);
            if (pages) {
                g.writeArrayFieldStart("pages");
                forEachPage(view, selected, rows, page -> {
                    try {
                        g.writeObject(page);
                    } catch (IOException e) {
                        throw new UncheckedIOException(e);
                    }
                });
                g.writeEndArray();
            }
            g.writeEndObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        out.println();
    }

    private void writeText(PrintWriter out, ProcessMemoryView view, AddressRange r,
                           List<ProcessMemoryView.Selected> selected, List<InspectReport.Vma> rows) {
        out.println("pid " + view.pid + ", page size " + PageClassification.levelLabel(Posix.PAGE_SIZE) + ", pfns "
                + (view.pfnVisible() ? "visible" : "hidden by the kernel (needs CAP_SYS_ADMIN)")
                + (r.isAll() ? "" : ", range " + r) + ", " + rows.size() + " VMAs");
        TablePrinter t = new TablePrinter(Column.left("START-END"), Column.left("PERMS"), Column.left("BACKING"),
                Column.right("SIZE"), Column.right("PRESENT"), Column.right("HUGE"), Column.right("ZERO"),
                Column.right("SWAP"), Column.left("LOCKED"), Column.left("NAME"));
        for (InspectReport.Vma v : rows) {
            String present = v.pagemapView() ? size(v.presentPages()) : "no view";
            t.row(v.start() + "-" + v.end(), v.perms(), v.backing(), human(v.sizeBytes()), present,
                    size(v.hugePages()), count(v.zeroPages()), size(v.swappedPages()),
                    v.locked() ? "yes" : v.lockedBytes() > 0 ? human(v.lockedBytes()) : "no", v.name());
        }
        t.print(out);
        for (InspectReport.Vma v : rows)
            if (!v.pagemapView()) out.println("no page view of " + v.start() + "-" + v.end() + ": " + v.noView());
        if (!pages) return;
        out.println();
        TablePrinter p = new TablePrinter(Column.left("HVA").width(14), Column.left("PRESENT").width(7),
                Column.right("PFN").width(9), Column.left("LEVEL"), Column.left("REFCOUNTED"), Column.left("FLAGS"))
                .stream(out);
        forEachPage(view, selected, rows, pg -> p.row(pg.hva(), pg.present() ? "yes" : "no",
                pg.pfn() != null ? pg.pfn() : pg.present() ? "hidden" : "-", pg.level(),
                pg.refcounted() == null ? (pg.present() ? "unknown" : "-") : pg.refcounted() ? "yes" : "no",
                flagsText(pg)));
        if (view.pfnVisible() && view.kpageflagsProblem() != null)
            out.println("kpageflags unreadable (" + view.kpageflagsProblem() + "): flags and refcounted are unknown");
    }

    /** Pages of every selected VMA that has a page view (the rest are reported as such, with no pages). */
    private void forEachPage(ProcessMemoryView view, List<ProcessMemoryView.Selected> selected,
                             List<InspectReport.Vma> rows, java.util.function.Consumer<InspectReport.Page> sink) {
        // No progress bar here: pages stream to stdout as they are read, so on a terminal the rows themselves
        // show progress and a bar on stderr would only garble them.
        for (int i = 0; i < selected.size(); i++)
            if (rows.get(i).pagemapView()) view.pages(selected.get(i), sink, done -> { });
    }

    private static String flagsText(InspectReport.Page pg) {
        List<String> all = new ArrayList<>();
        if (pg.flags() != null) all.addAll(pg.flags());
        for (String b : pg.pagemap()) all.add("pm:" + b);
        return all.isEmpty() ? "" : String.join(",", all);
    }

    private static String size(Long pagesOrNull) {
        return pagesOrNull == null ? "-" : human(pagesOrNull * Posix.PAGE_SIZE);
    }

    private static String count(Long n) {
        return n == null ? "-" : Long.toString(n);
    }

    /** Bytes as 0, 4K, 2M, 1.5G: exact units when they divide, one decimal otherwise. */
    static String human(long bytes) {
        if (bytes == 0) return "0";
        String[] units = {"K", "M", "G", "T", "P"};
        double v = bytes;
        int u = -1;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        if (u < 0) return bytes + "B";
        return (v == Math.rint(v) ? Long.toString((long) v) : String.format("%.1f", v)) + units[u];
    }
}
