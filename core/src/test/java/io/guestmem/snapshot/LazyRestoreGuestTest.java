package io.guestmem.snapshot;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.host.HostRegion;
import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.GuestProgram;
import io.guestmem.kvm.KvmAvailable;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.vm.VmMemory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A real guest runs on lazily restored memory. A guest writes its gfn and a tag into every page of an anonymous
 * and a memfd slot; the snapshot is taken and that VM closed; a new VM gets the snapshot through
 * {@link LazyRestore} and its guest, started at once, checks every page for the old tag and writes a new one.
 * Without prefetch the pages reach the guest only through KVM's own faults on the missing pages (userfaultfd
 * answers them), so the count of pages the guest found wrong (0) proves the bytes KVM mapped are the snapshot's.
 */
class LazyRestoreGuestTest {
    static final long BOOT = 0x40000, ANON_GPA = 0x200000, MEMFD_GPA = 0x800000, DATA = 2 << 20;
    static final long CODE = 0x1000;
    static final int T1 = 0x5a, T2 = 0xa5;
    @TempDir Path dir;

    @BeforeAll
    static void kvm() {
        KvmAvailable.assume();
    }

    static List<VcpuExit> run(VmMemory mem, Vcpu cpu, GuestProgram p) {
        for (GuestProgram.Chunk c : p.image()) mem.memory().write(c.gpa(), c.bytes());
        return GuestCpu.current().runToCompletion(cpu, p, 64);
    }

    static long pages() {
        return DATA / GuestCpu.GUEST_PAGE;
    }

    Path snapshotOfAGuest() throws Exception {
        return snapshotOfAGuest(dir.resolve("guest.snap"));
    }

    /** A snapshot of a guest that wrote {@link #pageValue}(gfn, T1) into every page of the anon and the memfd slot. */
    static Path snapshotOfAGuest(Path file) throws Exception {
        GuestCpu g = GuestCpu.current();
        try (KvmVm vm = KvmVm.open(); VmMemory mem = new VmMemory(vm);
             HostRegion boot = HostRegion.anonymous(BOOT).create();
             HostRegion anon = HostRegion.anonymous(DATA).create();
             HostRegion memfd = HostRegion.memfd(DATA).create()) {
            g.prepareVm(vm);
            mem.memory().addRam(0, 0, boot);
            mem.memory().addRam(1, ANON_GPA, anon);
            mem.memory().addRam(2, MEMFD_GPA, memfd);
            Vcpu cpu = vm.createVcpu(0);
            assertEquals(List.of(), run(mem, cpu, g.writeGfnToEveryPage(CODE, ANON_GPA, pages(), T1)));
            assertEquals(List.of(), run(mem, cpu, g.writeGfnToEveryPage(CODE, MEMFD_GPA, pages(), T1)));
            SnapshotWriter.write(mem.memory(), file);
        }
        return file;
    }

    @ParameterizedTest(name = "prefetch={0}")
    @ValueSource(booleans = {false, true})
    void aGuestRunsOnLazilyRestoredMemory(boolean prefetch) throws Exception {
        GuestCpu g = GuestCpu.current();
        Path file = snapshotOfAGuest();
        try (Snapshot snap = Snapshot.open(file); KvmVm vm = KvmVm.open()) {
            g.prepareVm(vm);
            try (LazyRestore lazy = LazyRestore.start(List.of(snap), vm, prefetch)) {
                Vcpu cpu = vm.createVcpu(0);
                for (long gpa : new long[] {ANON_GPA, MEMFD_GPA}) {
                    List<VcpuExit> exits = run(lazy.memory(), cpu, g.checkAndRewriteEveryPage(CODE, gpa, pages(), T1, T2));
                    assertEquals(0L, g.reported(exits).orElseThrow(() -> new AssertionError("no report in " + exits)),
                            g.arch() + ": pages the guest found without the snapshot's bytes, slot at 0x" + Long.toHexString(gpa));
                }
                LazyRestoreStats s = lazy.stats();
                System.out.println("lazy restore under a real guest (prefetch=" + prefetch + "): " + s);
                if (!prefetch) assertTrue(s.faultsServed() > 0, "KVM's faults on missing pages reached the handler: " + s);
                assertTrue(lazy.awaitComplete(Duration.ofSeconds(60)) || !prefetch, "the prefetcher finishes: " + s);
                // What the guest wrote is in the restored memory, as the host reads it.
                for (long i = 0; i < pages(); i++) {
                    long gpa = ANON_GPA + i * GuestCpu.GUEST_PAGE;
                    assertEquals(GuestCpu.pageValue(gpa >>> 12, T2), lazy.memory().memory().readU64(gpa), "gpa 0x" + Long.toHexString(gpa));
                    gpa = MEMFD_GPA + i * GuestCpu.GUEST_PAGE;
                    assertEquals(GuestCpu.pageValue(gpa >>> 12, T2), lazy.memory().memory().readU64(gpa), "gpa 0x" + Long.toHexString(gpa));
                }
                assertEquals(null, lazy.lastFailure());
            }
        }
    }
}
