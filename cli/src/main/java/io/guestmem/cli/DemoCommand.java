package io.guestmem.cli;

import io.guestmem.host.Backing;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.sys.Fmt;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code guestmem demo}: build a VM memory map over every backing the machine offers and verify it. */
@Command(name = "demo", mixinStandardHelpOptions = true,
        description = {"Map guest RAM over every backing this machine offers, register the memslots with a real KVM VM,",
                "run a tiny guest that writes every page, follow every gfn to its pfn, lock one slot within",
                "RLIMIT_MEMLOCK, and verify every guest page against pagemap and kpageflags.",
                "With --migrate, then: a second VM's guest writes every page, its memory is snapshotted and restored",
                "lazily (userfaultfd) into a new VM whose guest checks every page and writes new values, and that VM",
                "migrates live to a second process whose guest checks every page again.",
                "Exit 0 only when every guest page agrees."})
final class DemoCommand implements Callable<Integer> {

    @Spec
    CommandSpec spec;

    @Option(names = "--backings", split = ",", paramLabel = "NAME", converter = DemoBacking.Converter.class,
            completionCandidates = DemoBacking.Names.class,
            description = "Backings to map, one slot each (default: ${DEFAULT-VALUE}). Known: ${COMPLETION-CANDIDATES}.",
            defaultValue = "anon,thp,hugetlb-2M,memfd,guest_memfd,pfnmap")
    List<DemoBacking> backings;

    @Option(names = "--slot-size", paramLabel = "MiB", defaultValue = "8",
            description = "Size of each data slot in MiB, a multiple of 2 (default: ${DEFAULT-VALUE}; hugetlb-1G rounds up to 1024).")
    long slotSizeMiB;

    @Option(names = "--json", description = "Print one JSON document instead of the table.")
    boolean json;

    @Option(names = "--migrate", description = {"Then snapshot a second VM (over the anon, thp and memfd slots of --backings),",
            "restore it lazily into a new VM, run its guest, and migrate it live to a second process."})
    boolean migrate;

    @Override
    public Integer call() {
        if (slotSizeMiB < 2 || slotSizeMiB % 2 != 0 || slotSizeMiB > 64 * 1024)
            throw new UsageException("--slot-size must be an even number of MiB from 2 to 65536, got " + slotSizeMiB);
        PrintWriter out = spec.commandLine().getOut();
        ProcStatus before = ProcStatus.self();
        long vmLckBefore = before.vmLck(), vmPinBefore = before.vmPin();
        DemoReport report;
        try (DemoVm vm = new DemoVm()) {
            try (Progress p = Progress.start("mapping", backings.size(), "slots")) {
                vm.map(backings, slotSizeMiB << 20, p);
            }
            DemoReport.Kvm kvm;
            try (Progress p = Progress.start("guest", backings.size(), "slots")) {
                kvm = vm.runGuest(p);
            }
            DemoReport.Memlock memlock = vm.lockOne(vmLckBefore, vmPinBefore);
            List<String> disagreements = new ArrayList<>();
            long[] agreeTotal = new long[2];
            List<DemoReport.Slot> slots;
            try (Progress p = Progress.start("follow_pfn", backings.size() + 1, "slots")) {
                slots = vm.verify(disagreements, agreeTotal, p);
            }
            report = new DemoReport(slots, kvm, memlock,
                    new DemoReport.Verified(agreeTotal[0], agreeTotal[1], disagreements), new ArrayList<>(vm.notes()),
                    null, null);
        }
        boolean ok = true;
        if (migrate) {
            MigrateDemo.Result m = new MigrateDemo(backings, slotSizeMiB << 20, report.notes()).run();
            report = new DemoReport(report.slots(), report.kvm(), report.memlock(), report.verified(), report.notes(),
                    m.snapshot(), m.migration());
            ok = m.verified();
        }
        if (json) Json.write(out, report);
        else print(out, report);
        out.flush();
        DemoReport.Verified v = report.verified();
        return ok && v.total() > 0 && v.agree() == v.total() ? 0 : 1;
    }

    private static void print(PrintWriter out, DemoReport r) {
        TablePrinter t = new TablePrinter(TablePrinter.Column.right("slot"), TablePrinter.Column.left("gfn range"),
                TablePrinter.Column.left("backing"), TablePrinter.Column.right("size"),
                TablePrinter.Column.right("present"), TablePrinter.Column.right("refcounted"),
                TablePrinter.Column.right("not"), TablePrinter.Column.left("levels (pages)"),
                TablePrinter.Column.left("locked"), TablePrinter.Column.right("pinned MiB"));
        for (DemoReport.Slot s : r.slots()) {
            t.row(s.id(), Fmt.hex(s.gfnStart()) + "-" + Fmt.hex(s.gfnEnd()), s.backing(), Fmt.size(s.sizeBytes()),
                    s.pfnObservable() ? s.pagesPresent() : s.backing().equals(Backing.PFNMAP.label()) ? "n/a" : "hidden", s.refcounted(), s.nonRefcounted(),
                    levels(s.levels()), s.locked() ? "yes" : "no", s.pinnedBytes() >> 20);
        }
        t.print(out);
        DemoReport.Kvm k = r.kvm();
        out.println();
        out.println("kvm: " + (k.available() ? "available" : "not available") + ", guest "
                + (k.guestRan() ? "ran (" + k.exits() + " exits)" : "did not run") + (k.reason() != null ? " — " + k.reason() : ""));
        if (k.dirtyExpected() != null)
            out.println("kvm dirty log: " + k.dirtyLogged() + "/" + k.dirtyExpected() + " guest-written pages of the dirty-logged slots");
        DemoReport.Memlock m = r.memlock();
        out.println("memlock: RLIMIT_MEMLOCK " + (m.limitBytes() < 0 ? "unlimited" : Fmt.size(m.limitBytes()))
                + (m.capIpcLock() ? " (CAP_IPC_LOCK: bypassed)" : "") + ", VmLck " + Fmt.size(m.vmLckBeforeBytes())
                + " before, " + Fmt.size(m.vmLckAfterBytes()) + " after, VmPin " + Fmt.size(m.vmPinBeforeBytes())
                + " before, " + Fmt.size(m.vmPinAfterBytes()) + " after locking "
                + (m.lockedSlot() != null ? m.lockedSlot() : "nothing"));
        if (m.refused() != null) out.println("memlock refused: " + m.refused());
        for (String n : r.notes()) out.println("note: " + n);
        for (String d : r.verified().disagreements()) out.println("disagrees: " + d);
        out.println("verified: " + r.verified().agree() + "/" + r.verified().total() + " guest pages agree");
        if (r.snapshot() != null) printSnapshot(out, r.snapshot());
        if (r.migration() != null) printMigration(out, r.migration());
    }

    private static void printSnapshot(PrintWriter out, DemoReport.Snapshot s) {
        out.println();
        TablePrinter t = new TablePrinter(TablePrinter.Column.right("slot"), TablePrinter.Column.left("backing"),
                TablePrinter.Column.right("gpa"), TablePrinter.Column.right("size"),
                TablePrinter.Column.right("data pages"), TablePrinter.Column.right("zero pages"));
        for (DemoReport.SnapshotSlot x : s.slots())
            t.row(x.id(), x.backing(), Fmt.hex(x.gpa()), Fmt.size(x.sizeBytes()), x.dataPages(), x.zeroPages());
        t.print(out);
        out.println("snapshot: " + s.pagesSaved() + " pages saved, " + s.zeroPages() + " zero, " + s.untouchedPages()
                + " untouched; " + mib(s.bytesWritten()) + " (" + s.bytesWritten() + " bytes) written in " + ms(s.writeMs()));
        out.println("lazy restore: complete in " + ms(s.restoreMs()) + "; " + s.faultsServed() + " faults served (first after "
                + Math.round(s.firstFaultMicros()) + " us), blocks: " + s.prefetched() + " prefetched, " + s.accessorServed()
                + " by the accessors, " + s.blocksServed() + " served of which " + s.zeroBlocks() + " zero, "
                + s.dataBlocks() + " with data; " + mib(s.bytesRead()) + " read" + (s.failures() > 0 ? ", " + s.failures() + " FAILED" : ""));
        verified(out, "restored guest", s.verified(), "held the snapshot's values and took new ones");
    }

    private static void printMigration(PrintWriter out, DemoReport.Migration m) {
        out.println("migration: " + m.rounds() + " pre-copy rounds + the last, pages per round " + m.pagesPerRound()
                + ", " + m.pagesSent() + " pages (" + mib(m.bytesSent()) + ") sent in " + ms(m.totalMs())
                + ", downtime " + ms(m.downtimeMs()) + "; the guest made " + m.guestPasses() + " passes meanwhile");
        out.println("migration stop: " + m.stopReason());
        out.println("migration checksums: " + m.checksumAgree() + "/" + m.checksumChecked() + " pages agree; destination pid "
                + m.destinationPid() + " received " + m.pagesReceived() + " pages");
        verified(out, "migrated guest", m.verified(), "were as the source's guest left them and took new ones");
    }

    private static void verified(PrintWriter out, String who, DemoReport.Verified v, String what) {
        for (String d : v.disagreements()) out.println("disagrees (" + who + "): " + d);
        out.println("verified (" + who + "): " + v.agree() + "/" + v.total() + " guest pages " + what);
    }

    private static String mib(long bytes) {
        return String.format(java.util.Locale.ROOT, "%.1f MiB", bytes / (double) (1 << 20));
    }

    private static String ms(double ms) {
        return String.format(java.util.Locale.ROOT, "%.1f ms", ms);
    }

    private static String levels(Map<String, Long> levels) {
        StringBuilder sb = new StringBuilder();
        levels.forEach((k, v) -> sb.append(sb.isEmpty() ? "" : " ").append(k).append(':').append(v));
        return sb.toString();
    }
}
