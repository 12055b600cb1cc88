package io.guestmem.kvm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.kvm.x86.X86Cpu;
import io.guestmem.kvm.x86.X86GuestPrograms;
import io.guestmem.kvm.x86.X86Program;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotChange.Kind;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Posix;
import java.util.List;
import java.util.stream.LongStream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Dirty tracking against a real guest whose writes the test controls. this-machine.md recorded
 * KVM_GET_DIRTY_LOG coming back empty after a real-mode guest wrote pages 2, 3 and 5 on this PVM-based host;
 * these tests repeat that experiment in several variants and print what the real ioctl says, then measure the
 * userfaultfd-WP tracker and the dirty ring against the same writes. The guest is {@link GuestCpu#current()}'s
 * (x86 flat32 or arm64 EL1); the real-mode variants are x86's alone and skip elsewhere with the reason printed.
 */
class KvmDirtyTrackingGuestTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static final GuestCpu G = GuestCpu.current();
    static final long CODE = 0x1000, BASE = 0x80000; // data slot below 1 MiB: real mode reaches it
    static final int NPAGES = 16, TAG = 0x64697274;

    @BeforeAll
    static void kvm() {
        KvmAvailable.assume();
    }

    /** A VM with the boot slot (code, GDT) and a 16-page data slot at BASE with the given flags. */
    record Rig(KvmVm vm, GuestRam boot, GuestRam data, Memslot dataSlot, Vcpu cpu) implements AutoCloseable {
        static Rig open(KvmVm.Options options, int dataFlags) {
            KvmVm vm = KvmVm.open(options);
            GuestRam boot = GuestRam.anonymous(0x10000), data = GuestRam.anonymous(NPAGES * PAGE);
            G.prepareVm(vm);
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                    new Memslot(0, 0, 0, boot.size / PAGE, boot.addr, 0, -1, 0)));
            Memslot d = new Memslot(0, 1, BASE / PAGE, NPAGES, data.addr, dataFlags, -1, 0);
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null, d));
            return new Rig(vm, boot, data, d, vm.createVcpu(0));
        }

        /** The guest writes the given pages of the data slot (flat 32-bit or real mode); returns their gfns. */
        long[] guestWrites(boolean realMode, long... pages) {
            for (long p : pages) {
                if (realMode) {
                    X86Program prog = X86GuestPrograms.storeByteReal(CODE, BASE + p * PAGE, 0x77);
                    boot.load(CODE, prog.code());
                    assertEquals(List.of(new VcpuExit.Hlt()), X86Cpu.run(cpu, prog, 0, 8));
                    assertEquals(0x77, data.u8(p * PAGE));
                } else {
                    GuestProgram prog = G.writeGfnToEveryPage(CODE, BASE + p * PAGE, 1, TAG);
                    boot.load(prog, 0);
                    assertEquals(List.of(), G.runToCompletion(cpu, prog, 8), G.arch() + ": nothing but the clean end");
                    assertEquals(GuestCpu.pageValue((BASE + p * PAGE) >>> 12, TAG), data.u64(p * PAGE));
                }
            }
            return LongStream.of(pages).map(p -> dataSlot.baseGfn() + p).toArray();
        }

        @Override
        public void close() {
            vm.close();
            data.close();
            boot.close();
        }
    }

    static DirtyTrackerCheck check(String variant, SlotDirtyTracker t, long[] written) {
        DirtyTrackerCheck c = DirtyTrackerCheck.of(t.name() + " [" + variant + "]", written, t.collect());
        System.out.println("DIRTY: " + c.summary());
        return c;
    }

    @Test
    void kvmDirtyLogAfterRealModeWritesLikeTheEarlierProbe() {
        KvmAvailable.assumeX86("real-mode guest writes, the emulator path of the earlier probe");
        try (Rig rig = Rig.open(KvmVm.Options.defaults(), Memslot.LOG_DIRTY_PAGES)) {
            KvmDirtyLog log = KvmDirtyLog.of(rig.vm(), rig.dataSlot());
            DirtyTrackerCheck before = check("before any run", log, new long[0]);
            assertTrue(before.exact(), before.summary());
            long[] written = rig.guestWrites(true, 2, 3, 5);
            DirtyTrackerCheck c = check("real mode, pages 2 3 5", log, written);
            // Measured on this host (6.18 kvm-pvm): the log names exactly the written pages; the earlier empty
            // bitmap was not reproduced in any variant. Should a host differ, this says which pages it missed.
            assertTrue(c.exact(), c.summary());
            DirtyTrackerCheck again = check("second GET without a run", log, new long[0]);
            assertTrue(again.exact(), "GET_DIRTY_LOG clears what it returned: " + again.summary());
            DirtyTrackerCheck second = check("second run, page 5", log, rig.guestWrites(true, 5));
            assertTrue(second.exact(), second.summary());
        }
    }

    @Test
    void kvmDirtyLogVariants() {
        // Protected mode instead of real mode.
        try (Rig rig = Rig.open(KvmVm.Options.defaults(), Memslot.LOG_DIRTY_PAGES)) {
            DirtyTrackerCheck c = check(G.arch(), KvmDirtyLog.of(rig.vm(), rig.dataSlot()), rig.guestWrites(false, 2, 3, 5));
            assertTrue(c.exact(), c.summary());
        }
        // Pages touched by the host first, logging on from the start.
        try (Rig rig = Rig.open(KvmVm.Options.defaults(), Memslot.LOG_DIRTY_PAGES)) {
            for (int p = 0; p < NPAGES; p++) rig.data().putU64(p * PAGE, 1);
            DirtyTrackerCheck c = check("host-prefaulted", KvmDirtyLog.of(rig.vm(), rig.dataSlot()), rig.guestWrites(false, 2, 3, 5));
            assertTrue(c.exact(), c.summary());
        }
        // The guest maps every page first, then logging is switched on (FLAGS_ONLY), as a migration would.
        try (Rig rig = Rig.open(KvmVm.Options.defaults(), 0)) {
            rig.guestWrites(false, LongStream.range(0, NPAGES).toArray());
            Memslot logging = new Memslot(0, 1, rig.dataSlot().baseGfn(), NPAGES, rig.data().addr, Memslot.LOG_DIRTY_PAGES, -1, 0);
            rig.vm().memslotObserver().beforeCommit(new MemslotChange(Kind.FLAGS_ONLY, rig.dataSlot(), logging));
            DirtyTrackerCheck c = check("logging enabled after the guest mapped the pages",
                    KvmDirtyLog.of(rig.vm(), logging), rig.guestWrites(false, 2, 3, 5));
            assertTrue(c.exact(), c.summary());
        }
        // A slot without LOG_DIRTY_PAGES has no log: the library refuses, as KVM would (ENOENT).
        try (Rig rig = Rig.open(KvmVm.Options.defaults(), 0)) {
            KvmException e = assertThrows(KvmException.class, () -> KvmDirtyLog.of(rig.vm(), rig.dataSlot()));
            assertEquals(Errno.ENOENT, e.errno());
        }
    }

    @Test
    void uffdWpTrackerSeesExactlyTheGuestsWritesTwiceAndAgreesWithKvm() {
        try (Rig rig = Rig.open(KvmVm.Options.defaults(), Memslot.LOG_DIRTY_PAGES);
             UffdWpDirtyTracker uffd = UffdWpDirtyTracker.start(rig.dataSlot())) {
            KvmDirtyLog log = KvmDirtyLog.of(rig.vm(), rig.dataSlot());
            for (long[] pages : new long[][] {{2, 3, 5}, {0, 7, 8, 15}}) {
                long[] written = rig.guestWrites(false, pages);
                DirtyTrackerCheck u = check(G.arch() + " " + java.util.Arrays.toString(pages), uffd, written);
                DirtyTrackerCheck k = check(G.arch() + " " + java.util.Arrays.toString(pages), log, written);
                assertTrue(u.exact(), u.summary());
                assertArrayEquals(k.reported(), u.reported(), "KVM's log and uffd-wp agree on guest writes");
            }
            // Real-mode writes too (the emulator path of this host); x86 only: arm64 has no real mode.
            if (io.guestmem.sys.Arch.CURRENT.isX86()) {
                long[] written = rig.guestWrites(true, 4, 9);
                DirtyTrackerCheck u = check("real mode [4, 9]", uffd, written);
                assertTrue(u.exact(), u.summary());
                check("real mode [4, 9]", log, written);
            } else {
                System.out.println("SKIP (part): real-mode writes are x86-only; this is " + io.guestmem.sys.Arch.CURRENT.name());
            }

            // A host write: uffd-wp sees it (it watches the host page tables), KVM's log cannot.
            rig.data().putU64(10 * PAGE, 42);
            long[] hostWritten = {rig.dataSlot().baseGfn() + 10};
            DirtyTrackerCheck hu = check("host write to page 10", uffd, hostWritten);
            DirtyTrackerCheck hk = check("host write to page 10", log, hostWritten);
            assertTrue(hu.exact(), hu.summary());
            assertEquals(0, hk.reported().length, "KVM logs guest writes only: " + hk.summary());
            // Nothing written since: both report nothing.
            assertEquals(0, uffd.collect().length);
            assertEquals(0, log.collect().length);
        }
    }

    @Test
    void dirtyRingReportsTheGuestsWrites() {
        try (KvmVm probe = KvmVm.open()) {
            org.junit.jupiter.api.Assumptions.assumeTrue(probe.capabilities().dirtyLogRing(),
                    "neither KVM_CAP_DIRTY_LOG_RING nor KVM_CAP_DIRTY_LOG_RING_ACQ_REL");
            System.out.println("dirty ring through " + io.guestmem.kvmapi.KvmCap.nameOf(probe.capabilities().dirtyLogRingCap()));
        }
        try (Rig rig = Rig.open(KvmVm.Options.defaults().withDirtyRing(64 * 1024), Memslot.LOG_DIRTY_PAGES)) {
            KvmDirtyRings rings = new KvmDirtyRings(rig.vm());
            SlotDirtyTracker ring = rings.forSlot(rig.dataSlot());
            for (long[] pages : new long[][] {{2, 3, 5}, {1, 5, 14}}) {
                long before = rings.rawEntries();
                long[] written = rig.guestWrites(false, pages);
                long[] reported = ring.collect();
                DirtyTrackerCheck c = new DirtyTrackerCheck("KVM dirty ring " + java.util.Arrays.toString(pages), written,
                        reported, rings.rawEntries() - before, DirtyTrackerCheck.thisHost());
                System.out.println("DIRTY: " + c.summary());
                assertTrue(c.exact(), c.summary());
            }
            // A bitmap log does not exist on a ring VM (KVM answers ENXIO); the library says so up front.
            KvmException e = assertThrows(KvmException.class, () -> KvmDirtyLog.of(rig.vm(), rig.dataSlot()));
            assertEquals(Errno.ENXIO, e.errno());
        }
    }
}
