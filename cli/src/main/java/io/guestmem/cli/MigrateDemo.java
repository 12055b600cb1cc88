package io.guestmem.cli;

import io.guestmem.access.GuestMemory;
import io.guestmem.access.RamSlot;
import io.guestmem.host.Backing;
import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.KvmDirtyLog;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.memslot.Memslot;
import io.guestmem.migration.MigrationSource;
import io.guestmem.migration.MigrationStats;
import io.guestmem.snapshot.LazyRestore;
import io.guestmem.snapshot.LazyRestoreStats;
import io.guestmem.snapshot.Snapshot;
import io.guestmem.snapshot.SnapshotInfo;
import io.guestmem.snapshot.SnapshotSlot;
import io.guestmem.snapshot.SnapshotWriter;
import io.guestmem.sys.Fmt;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;

/**
 * {@code demo --migrate}: a second VM over the backings a restore can create (anon, thp, memfd) runs the demo's
 * guest (every page written), its memory is saved to a snapshot in a temporary directory and that VM closed; a
 * new KVM VM gets the snapshot lazily through userfaultfd ({@link LazyRestore}, prefetching) while its guest
 * checks every page for the value it had and writes a new one; once every block has arrived that VM migrates live
 * ({@link MigrationSource}, KVM's dirty log per slot as the tracker) to a {@link DestinationProcess} while its
 * guest rewrites every page, pass after pass, until the pause; there a new VM's guest checks every page again.
 *
 * <p>Everything is released on every path: the VMs, the snapshot, the dirty logs, the socket, the guest thread,
 * the destination process (killed if it still runs) and the temporary directory.
 */
final class MigrateDemo {
    /** What a restore creates on its own ({@link io.guestmem.snapshot.SnapshotRestore#create}) and the demo maps. */
    static final Set<Backing> RESTORABLE = Set.of(Backing.ANON, Backing.THP, Backing.MEMFD);
    private static final Duration RESTORE_LIMIT = Duration.ofSeconds(60), CONNECT_LIMIT = Duration.ofSeconds(60),
            DESTINATION_LIMIT = Duration.ofSeconds(180), PAUSE_LIMIT = Duration.ofSeconds(60);
    /** The restored guest's tag; the migrating guest's passes use the ones after it. */
    private static final int RESTORED_TAG = DemoGuest.TAG + 1;

    record Result(DemoReport.Snapshot snapshot, DemoReport.Migration migration) {
        boolean verified() {
            return ok(snapshot.verified()) && ok(migration.verified());
        }

        private static boolean ok(DemoReport.Verified v) {
            return v.total() > 0 && v.agree() == v.total();
        }
    }

    private final List<DemoBacking> backings;
    private final long slotBytes;
    private final List<String> notes;

    /** The restorable ones of {@code requested}; a note for each other one, a usage error if none is left. */
    MigrateDemo(List<DemoBacking> requested, long slotBytes, List<String> notes) {
        this.slotBytes = slotBytes;
        this.notes = notes;
        List<DemoBacking> keep = new ArrayList<>();
        for (DemoBacking b : requested) {
            if (RESTORABLE.contains(b.kind())) keep.add(b);
            else notes.add("migrate: " + b + " left out: " + why(b.kind()));
        }
        if (keep.isEmpty())
            throw new UsageException("--migrate needs at least one of anon, thp, memfd in --backings (got " + requested + ")");
        backings = List.copyOf(keep);
    }

    private static String why(Backing b) {
        if (b.isHugetlb()) return "its restore and the destination process would each need the hugetlb pool raised again";
        return switch (b) {
            case GUEST_MEMFD -> "private guest_memfd pages cannot be read by the host to be saved";
            case PFNMAP -> "a restore cannot create a VM_PFNMAP mapping on its own";
            case SECRET -> "memfd_secret memory cannot be registered with userfaultfd for a lazy restore";
            default -> "a restore cannot create this backing on its own";
        };
    }

    Result run() {
        Path dir;
        try {
            dir = Files.createTempDirectory("guestmem-demo-");
        } catch (IOException e) {
            throw new MigrateDemoException("could not create a temporary directory for the snapshot: " + e.getMessage(), e);
        }
        boolean done = false;
        try {
            Result r = restoreAndMigrate(snapshot(dir.resolve("demo.snap")), dir);
            done = true;
            return r;
        } finally {
            try {
                deleteTree(dir);
            } catch (UncheckedIOException e) {
                if (done) throw e; // otherwise the failure that is already on its way says more
            }
        }
    }

    /** The second VM, its guest run, and its snapshot in {@code file}; the VM is closed when this returns. */
    private SnapshotInfo snapshot(Path file) {
        try (DemoVm vm = new DemoVm()) {
            if (!vm.kvmAvailable()) throw new MigrateDemoException("--migrate needs a KVM guest: " + vm.kvmReason());
            try (Progress p = Progress.start("migrate: mapping", backings.size(), "slots")) {
                vm.map(backings, slotBytes, p);
            }
            try (Progress p = Progress.start("migrate: guest", backings.size(), "slots")) {
                vm.runGuest(p);
            }
            for (String n : vm.notes()) notes.add("migrate: " + n);
            return SnapshotWriter.write(vm.memory(), file);
        } catch (IOException e) {
            throw new MigrateDemoException("snapshot to " + file + ": " + e.getMessage(), e);
        }
    }

    private Result restoreAndMigrate(SnapshotInfo info, Path dir) {
        GuestCpu g = GuestCpu.current();
        try (Snapshot snap = Snapshot.open(info.file()); KvmVm kvm = KvmVm.open()) {
            g.prepareVm(kvm);
            List<DemoReport.SnapshotSlot> saved = new ArrayList<>();
            for (SnapshotSlot s : snap.manifest().slots())
                saved.add(new DemoReport.SnapshotSlot(s.slotId(), s.backingLabel(), s.gpa(), s.size(), s.dataPages(), s.zeroPages()));
            try (LazyRestore lazy = LazyRestore.start(List.of(snap), kvm, true)) {
                GuestMemory mem = lazy.memory().memory();
                long pageSize = mem.memslots().geometry().pageSize();
                List<Memslot> data = mem.ramSlots().stream().map(RamSlot::slot).filter(s -> s.id() != DemoGuest.BOOT_SLOT).toList();
                DemoGuest guest = new DemoGuest(mem, kvm.createVcpu(0));
                // At once, while the prefetcher streams: the guest's reads fault the missing pages in through KVM.
                long total = 0, guestWrong = 0;
                try (Progress p = Progress.start("migrate: restored guest", data.size(), "slots")) {
                    for (Memslot s : data) {
                        guestWrong += guest.checkAndRewrite(s, pageSize, DemoGuest.TAG, RESTORED_TAG);
                        total += DemoGuest.guestPages(s, pageSize);
                        p.step(1);
                    }
                }
                if (!lazy.awaitComplete(RESTORE_LIMIT))
                    throw new MigrateDemoException("the lazy restore did not complete within " + RESTORE_LIMIT.toSeconds()
                            + " s: " + lazy.stats(), lazy.lastFailure());
                LazyRestoreStats st = lazy.stats();
                long hostWrong = 0;
                for (Memslot s : data) hostWrong += guest.hostMismatches(s, pageSize, RESTORED_TAG);
                List<String> why = new ArrayList<>();
                if (guestWrong > 0) why.add(guestWrong + " pages did not hold the snapshot's value for the restored guest");
                if (hostWrong > 0) why.add(hostWrong + " pages did not read back the restored guest's new value");
                if (st.failures() > 0) why.add(st.failures() + " blocks could not be restored: " + lazy.lastFailure());
                DemoReport.Snapshot report = new DemoReport.Snapshot(backings.stream().map(DemoBacking::label).toList(),
                        info.pagesSaved(), info.zeroPages(), info.untouchedPages(), info.bytesWritten(), info.millis(), saved,
                        st.restoreMs(), st.firstFaultMicros(), st.faultsServed(), st.accessorServed(), st.prefetched(),
                        st.zeroBlocks(), st.blocksServed(), st.dataBlocks(), st.bytesRead(), st.failures(),
                        agreed(total, guestWrong + hostWrong, why));
                return new Result(report, migrate(kvm, mem, guest, data, dir.resolve("migrate.sock")));
            }
        } catch (IOException e) {
            throw new MigrateDemoException("lazy restore of " + info.file() + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MigrateDemoException("interrupted while the lazy restore completed", e);
        }
    }

    /**
     * A page agrees when every check of it passed; the guest reports only how many pages it found wrong, so
     * {@code agree} is the total less every check's count: exact when they are all 0, a lower bound otherwise.
     */
    private static DemoReport.Verified agreed(long total, long wrong, List<String> why) {
        return new DemoReport.Verified(Math.max(0, total - wrong), total, why);
    }

    /**
     * Live migration of the restored VM's memory to a destination process, its guest rewriting every page pass
     * after pass during pre-copy (KVM's dirty log of each slot is the tracker), paused for the last round.
     */
    private DemoReport.Migration migrate(KvmVm kvm, GuestMemory mem, DemoGuest guest, List<Memslot> data, Path sock) {
        long pageSize = mem.memslots().geometry().pageSize();
        Map<Integer, KvmDirtyLog> logs = new HashMap<>();
        AtomicBoolean stop = new AtomicBoolean();
        AtomicInteger passes = new AtomicInteger();
        AtomicReference<Throwable> guestFailure = new AtomicReference<>();
        Thread vcpu = null;
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            for (RamSlot r : mem.ramSlots())
                if (r.slot().logsDirty()) logs.put(r.slot().id(), KvmDirtyLog.of(kvm, r.slot()));
            // The guest: pass after pass, every page of every data slot gets pageValue(gfn, RESTORED_TAG + pass).
            vcpu = Thread.ofPlatform().name("guestmem-demo-guest").start(() -> {
                try {
                    for (int pass = 1; !stop.get(); pass++) {
                        for (Memslot s : data) {
                            List<VcpuExit> exits = guest.write(s, pageSize, RESTORED_TAG + pass);
                            if (!exits.isEmpty()) throw new IllegalStateException("the guest exited to the host: " + exits);
                        }
                        passes.set(pass);
                    }
                } catch (Throwable t) {
                    guestFailure.set(t);
                }
            });
            while (passes.get() == 0 && vcpu.isAlive()) sleep();
            if (guestFailure.get() != null) throw new MigrateDemoException("the guest failed before the migration: "
                    + guestFailure.get().getMessage(), guestFailure.get());
            server.bind(UnixDomainSocketAddress.of(sock));
            Thread guestThread = vcpu;
            MigrationStats stats;
            MigrateDestinationCommand.Result dest;
            long pid;
            try (DestinationProcess child = DestinationProcess.start(sock, DESTINATION_LIMIT)) {
                pid = child.pid();
                try (SocketChannel ch = child.accept(server, CONNECT_LIMIT)) {
                    stats = MigrationSource.send(mem, ch, s -> {
                        KvmDirtyLog l = logs.get(s.id());
                        return l == null ? null : l.collect();
                    }, () -> pause(stop, guestThread, passes, mem), MigrationSource.Options.defaults());
                } catch (IOException e) {
                    throw new MigrateDemoException("migration to the destination process (pid " + pid + "): " + e.getMessage(), e);
                }
                dest = child.result();
            }
            if (guestFailure.get() != null) throw new MigrateDemoException("the guest failed during the migration: "
                    + guestFailure.get().getMessage(), guestFailure.get());
            List<String> why = new ArrayList<>();
            int lastTag = RESTORED_TAG + passes.get();
            if (dest.tag() != lastTag) why.add("the destination read tag " + Fmt.hex(dest.tag()) + ", the source's guest left " + Fmt.hex(lastTag));
            if (dest.guestWrong() > 0) why.add(dest.guestWrong() + " pages were not as the source's guest left them, for the destination's guest");
            if (dest.hostWrong() > 0) why.add(dest.hostWrong() + " pages did not read back the destination guest's new value");
            if (!stats.verified()) why.add("checksums: " + stats.agree() + "/" + stats.checked() + " pages agree");
            if (dest.pagesReceived() != stats.pagesSent())
                why.add("the destination counted " + dest.pagesReceived() + " pages, the source sent " + stats.pagesSent());
            long wrong = dest.guestWrong() + dest.hostWrong() + (dest.tag() != lastTag ? dest.guestPages() : 0);
            return new DemoReport.Migration(stats.rounds(), stats.pagesPerRound(), stats.pagesSent(), stats.bytesSent(),
                    stats.downtimeMs(), stats.totalMs(), stats.stopReason(), passes.get(), stats.agree(), stats.checked(),
                    pid, dest.pagesReceived(), agreed(dest.guestPages(), wrong, why));
        } catch (IOException e) {
            throw new MigrateDemoException("migration socket " + sock + ": " + e.getMessage(), e);
        } finally {
            stop.set(true);
            if (vcpu != null) joinQuietly(vcpu);
            for (KvmDirtyLog l : logs.values()) l.close();
        }
    }

    /** The migration's pause: the guest stops after its pass, and its last tag goes with the memory as device state. */
    private static void pause(AtomicBoolean stop, Thread guest, AtomicInteger passes, GuestMemory mem) {
        stop.set(true);
        joinQuietly(guest);
        if (guest.isAlive()) throw new MigrateDemoException("the guest did not pause within " + PAUSE_LIMIT.toSeconds() + " s");
        mem.writeU64(DemoGuest.STATE_GPA, RESTORED_TAG + passes.get());
    }

    private static void sleep() {
        try {
            Thread.sleep(1);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new MigrateDemoException("interrupted while the guest started", e);
        }
    }

    private static void joinQuietly(Thread t) {
        try {
            t.join(PAUSE_LIMIT);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void deleteTree(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            for (Path p : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        } catch (IOException e) {
            throw new UncheckedIOException("could not delete the demo's temporary directory " + dir, e);
        }
    }
}
