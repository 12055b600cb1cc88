package io.guestmem.it;

import io.guestmem.access.GuestMemory;
import io.guestmem.cli.Main;
import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.host.HugePageSize;
import io.guestmem.host.Prefault;
import io.guestmem.kvm.KvmGuestMemfd;
import io.guestmem.kvm.KvmVm;
import io.guestmem.lock.LockMode;
import io.guestmem.snapshot.RestoredMemory;
import io.guestmem.snapshot.Snapshot;
import io.guestmem.snapshot.SnapshotRestore;
import io.guestmem.snapshot.SnapshotWriter;
import io.guestmem.vm.VmMemory;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.List;

/**
 * Runs one of the library's setup paths in a loop until it is killed ({@link CrashSafetyTest} sends
 * SIGKILL at a random instant). Prints {@code PHASE <name>} before each step, so the parent knows where
 * the kill landed, and {@code ITER <n>} after each whole round. Scenarios: {@code hugetlb-<label>} (raise
 * the pool, a prefaulted hugetlb mapping and a hugetlb memfd), {@code vm} (a KVM VM, a RAM memslot
 * locked, a guest_memfd mapped), {@code demo} (the CLI's demo, all backings), {@code snapshot} (a full
 * snapshot, an increment on it and an eager restore of the two, in {@link #SNAPSHOT_DIR}),
 * {@code leaky} (the control: a raise with no crash safety).
 */
public final class CrashChild {
    /** Where the snapshot scenario writes; the parent checks it after each kill. */
    static final Path SNAPSHOT_DIR = Path.of(System.getProperty("java.io.tmpdir"), "guestmem-crash-snapshots");
    public static void main(String[] args) throws Exception {
        String scenario = args[0];
        System.out.println("READY");
        try {
            for (long iter = 1; ; iter++) {
                if (scenario.startsWith("hugetlb-")) hugetlb(HugePagePools.sizes().stream()
                        .filter(s -> s.label().equals(scenario.substring(8))).findFirst().orElseThrow());
                else if (scenario.equals("vm")) vm();
                else if (scenario.equals("demo")) demo();
                else if (scenario.equals("snapshot")) snapshot();
                else if (scenario.equals("leaky")) leaky(iter);
                else throw new IllegalArgumentException(scenario);
                System.out.println("ITER " + iter);
            }
        } catch (Throwable t) {
            // the parent discards stderr; this line is how a round that failed before its kill is reported
            System.out.println("FAILED " + t);
            System.out.flush();
            System.exit(1);
        }
    }

    static void phase(String p) {
        System.out.println("PHASE " + p);
    }

    private static void hugetlb(HugePageSize size) {
        long pages = size.gigantic() ? 1 : 4;
        phase("raise");
        try (HugePagePools.Reservation res = HugePagePools.raise(size, pages)) {
            phase("map");
            try (HostRegion r = HostRegion.hugetlb(pages / 2 == 0 ? size.bytes() : pages / 2 * size.bytes(), size)
                    .prefault(Prefault.Mode.WRITE).create()) {
                phase("touch");
                r.segment().set(ValueLayout.JAVA_LONG, 0, 1);
                phase("memfd");
                if (!size.gigantic()) {
                    try (HostRegion m = HostRegion.memfdHugetlb(2 * size.bytes(), size).name("guestmem-crash")
                            .prefault(Prefault.Mode.WRITE).create()) {
                        phase("memfd-mapped");
                    }
                }
                phase("unmap");
            }
            phase("restore");
        }
    }

    private static void vm() {
        phase("kvm-open");
        try (KvmVm vm = KvmVm.open(); VmMemory mem = new VmMemory(vm)) {
            phase("region");
            try (HostRegion ram = HostRegion.anonymous(8L << 20).create()) {
                phase("memslot");
                mem.memory().addRam(1, 0x100000, ram);
                phase("memslot-lock");
                mem.lock().lockMemslot(1, LockMode.READ_WRITE);
                phase("guest_memfd");
                if (vm.capabilities().guestMemfdMmapShared()) {
                    try (KvmGuestMemfd g = vm.createGuestMemfd(2L << 20);
                         HostRegion gr = HostRegion.ofFd(g.fd(), 0, 2L << 20, Backing.GUEST_MEMFD).create()) {
                        phase("guest_memfd-mapped");
                        gr.segment().set(ValueLayout.JAVA_LONG, 0, 1);
                    }
                }
                phase("unlock");
                mem.lock().unlockAll();
                mem.memslots().deleteMemslot(0, 1);
            }
            phase("vm-close");
        }
    }

    /**
     * The control: what the library did before its pools were crash-safe (nr_overcommit_hugepages written
     * directly, put back only on a clean close), so the crash test can show it notices a leftover.
     */
    private static void leaky(long iter) throws Exception {
        if (iter == 1) {
            HugePageSize s = HugePagePools.sizes().getFirst();
            java.nio.file.Path knob = s.sysfsDir().resolve("nr_overcommit_hugepages");
            long v = Long.parseLong(java.nio.file.Files.readString(knob).trim());
            phase("leaky-raise");
            java.nio.file.Files.writeString(knob, Long.toString(v + 1));
        }
        Thread.sleep(50);
    }

    private static void snapshot() throws Exception {
        long mib = 1 << 20;
        phase("snapshot-memory");
        try (VmMemory vm = new VmMemory(); HostRegion a = HostRegion.anonymous(4 * mib).create();
             HostRegion m = HostRegion.memfd(4 * mib).create()) {
            GuestMemory gm = vm.memory();
            gm.addRam(0, 0, a);
            gm.addRam(1, 64 * mib, m);
            long page = gm.memslots().geometry().pageSize();
            for (long off = 0; off < 4 * mib; off += 3 * page) {
                gm.writeU64(off, off + 1);
                gm.writeU64(64 * mib + off, off + 2);
            }
            gm.pagesToSend(null); // the base covers what is written so far
            Path full = SNAPSHOT_DIR.resolve("full.snap"), inc = SNAPSHOT_DIR.resolve("inc.snap");
            phase("snapshot-write");
            SnapshotWriter.write(gm, full);
            for (long off = page; off < 4 * mib; off += 7 * page) gm.writeU64(off, ~off);
            phase("snapshot-increment");
            try (Snapshot base = Snapshot.open(full)) {
                SnapshotWriter.writeIncremental(gm, base, gm.pagesToSend(null), inc);
                phase("snapshot-restore");
                try (Snapshot i = Snapshot.open(inc); RestoredMemory back = SnapshotRestore.eager(List.of(base, i), null)) {
                    phase("snapshot-restored");
                }
            }
        }
    }

    private static void demo() {
        phase("demo");
        StringWriter out = new StringWriter(), err = new StringWriter();
        int rc = Main.execute(new PrintWriter(out), new PrintWriter(err), "demo", "--json", "--slot-size", "2");
        if (rc != 0) throw new IllegalStateException("demo exited " + rc + ": " + err);
    }
}
