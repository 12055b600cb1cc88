package io.guestmem.kvm;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotChange.Kind;
import io.guestmem.memslot.MemslotObserver;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** KvmVm against the real /dev/kvm: capabilities, the memslot mirror and its vetoes, close order. */
class KvmVmTest {
    static final long PAGE = Posix.PAGE_SIZE;

    @BeforeAll
    static void kvm() {
        KvmAvailable.assume();
    }

    static Memslot slot(int id, long gpa, long bytes, long uaddr, int flags) {
        return new Memslot(0, id, gpa / PAGE, bytes / PAGE, uaddr, flags, -1, 0);
    }

    @Test
    void capabilitiesAreReadFromTheVm() {
        try (KvmVm vm = KvmVm.open()) {
            KvmCapabilities c = vm.capabilities();
            System.out.println("KVM capabilities on this host: " + c);
            assertEquals(12, c.apiVersion());
            assertTrue(c.nrMemslots() > 0, "KVM_CAP_NR_MEMSLOTS");
            assertTrue(c.syncMmu(), "every KVM since 2.6.27 has SYNC_MMU");
            assertEquals(c.userMemory2(), vm.usesRegion2());
            if (c.guestMemfd()) assertTrue(c.guestMemfdFlags() >= 0);
        }
    }

    @Test
    void createMoveFlagsDeleteAreMirroredIntoKvm() {
        KvmAvailable.assume();
        try (KvmVm vm = KvmVm.open(); GuestRam boot = GuestRam.anonymous(0x10000); GuestRam data = GuestRam.anonymous(0x10000)) {
            GuestCpu.current().prepareVm(vm);
            MemslotObserver mirror = vm.memslotObserver();
            Memslot bootSlot = slot(0, 0, boot.size, boot.addr, 0);
            mirror.beforeCommit(new MemslotChange(Kind.CREATE, null, bootSlot));
            Memslot d = slot(1, 0x20000, data.size, data.addr, 0);
            mirror.beforeCommit(new MemslotChange(Kind.CREATE, null, d));
            assertEquals(2, vm.mirroredSlots().size());
            Vcpu cpu = vm.createVcpu(0);

            // The guest's store to 0x20010 lands in the data slot's memory.
            runStore(cpu, boot, 0x20010, 0x5a);
            assertEquals(0x5a, data.u8(0x10));

            // MOVE the data slot to 0x40000: the same host memory now answers there, and 0x20000 is unbacked.
            Memslot moved = slot(1, 0x40000, data.size, data.addr, 0);
            mirror.beforeCommit(new MemslotChange(Kind.MOVE, d, moved));
            runStore(cpu, boot, 0x40020, 0x6b);
            assertEquals(0x6b, data.u8(0x20));
            List<VcpuExit> exits = runStore(cpu, boot, 0x20030, 0x7c);
            assertEquals(new VcpuExit.Mmio(0x20030, 1, true, new byte[] {0x7c}).toString(), exits.get(0).toString());

            // FLAGS_ONLY: turning on dirty logging makes KVM_GET_DIRTY_LOG answer for the slot (ENOENT before).
            SyscallException noLog = assertThrows(SyscallException.class, () -> vm.vmFd().getDirtyLog(1, moved.npages()));
            assertEquals(Errno.ENOENT.number, noLog.errno());
            Memslot logging = slot(1, 0x40000, data.size, data.addr, Memslot.LOG_DIRTY_PAGES);
            mirror.beforeCommit(new MemslotChange(Kind.FLAGS_ONLY, moved, logging));
            assertDoesNotThrow(() -> vm.vmFd().getDirtyLog(1, logging.npages()));

            // DELETE: the range becomes MMIO.
            mirror.beforeCommit(new MemslotChange(Kind.DELETE, logging, null));
            exits = runStore(cpu, boot, 0x40040, 0x11);
            assertInstanceOf(VcpuExit.Mmio.class, exits.get(0));
            assertEquals(0, data.u8(0x40));
            assertEquals(1, vm.mirroredSlots().size());
        }
    }

    /** This architecture's store-byte guest from code at 0x1000 of the boot slot; the exits before its clean end. */
    static List<VcpuExit> runStore(Vcpu cpu, GuestRam boot, long gpa, int value) {
        GuestCpu g = GuestCpu.current();
        GuestProgram p = g.storeByte(0x1000, gpa, value);
        boot.load(p, 0);
        return g.runToCompletion(cpu, p, 10);
    }

    @Test
    void kvmRefusalsVetoWithKvmsOwnError() {
        try (KvmVm vm = KvmVm.open(); GuestRam ram = GuestRam.anonymous(0x10000)) {
            MemslotObserver mirror = vm.memslotObserver();
            mirror.beforeCommit(new MemslotChange(Kind.CREATE, null, slot(0, 0, ram.size, ram.addr, 0)));

            SyscallException overlap = assertThrows(SyscallException.class, () -> mirror.beforeCommit(
                    new MemslotChange(Kind.CREATE, null, slot(1, 0x8000, ram.size, ram.addr, 0))));
            assertEquals(Errno.EEXIST.number, overlap.errno());
            assertTrue(overlap.getMessage().contains("KVM_SET_USER_MEMORY_REGION"), overlap.getMessage());

            SyscallException unaligned = assertThrows(SyscallException.class, () -> mirror.beforeCommit(
                    new MemslotChange(Kind.CREATE, null, slot(2, 0x100000, PAGE, ram.addr + 8, 0))));
            assertEquals(Errno.EINVAL.number, unaligned.errno());

            // KVM cannot change READONLY on an existing slot.
            Memslot s0 = slot(0, 0, ram.size, ram.addr, 0);
            SyscallException ro = assertThrows(SyscallException.class, () -> mirror.beforeCommit(
                    new MemslotChange(Kind.FLAGS_ONLY, s0, slot(0, 0, ram.size, ram.addr, Memslot.READONLY))));
            assertEquals(Errno.EINVAL.number, ro.errno());

            assertEquals(1, vm.mirroredSlots().size(), "vetoed changes leave no trace: " + vm.mirroredSlots());
        }
    }

    @Test
    void guestMemfdSlotWithDirtyLoggingIsRefused() {
        try (KvmVm vm = KvmVm.open()) {
            org.junit.jupiter.api.Assumptions.assumeTrue(vm.capabilities().guestMemfd(), "no KVM_CAP_GUEST_MEMFD");
            KvmGuestMemfd g = vm.createGuestMemfd(16 * PAGE);
            long addr = g.mapShared();
            try (GuestRam ram = GuestRam.adopt(addr, g.size())) {
                Memslot bad = new Memslot(0, 3, 0x100, 16, addr, Memslot.GUEST_MEMFD | Memslot.LOG_DIRTY_PAGES, g.fd(), 0);
                SyscallException e = assertThrows(SyscallException.class,
                        () -> vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null, bad)));
                assertEquals(Errno.EINVAL.number, e.errno());
                assertTrue(e.getMessage().contains("guest_memfd=" + g.fd()), e.getMessage());
                assertTrue(vm.mirroredSlots().isEmpty());
            }
        }
    }

    @Test
    void rolledBackUndoesWhatKvmAccepted() {
        try (KvmVm vm = KvmVm.open(); GuestRam ram = GuestRam.anonymous(0x10000)) {
            MemslotObserver mirror = vm.memslotObserver();
            MemslotChange create = new MemslotChange(Kind.CREATE, null, slot(0, 0, ram.size, ram.addr, 0));
            mirror.beforeCommit(create);
            mirror.rolledBack(create); // a later observer vetoed
            assertTrue(vm.mirroredSlots().isEmpty());
            // KVM really dropped it: the same range can be created again under another id.
            assertDoesNotThrow(() -> mirror.beforeCommit(new MemslotChange(Kind.CREATE, null, slot(5, 0, ram.size, ram.addr, 0))));

            Memslot a = slot(5, 0, ram.size, ram.addr, 0), b = slot(5, 0x100000, ram.size, ram.addr, 0);
            MemslotChange move = new MemslotChange(Kind.MOVE, a, b);
            mirror.beforeCommit(move);
            mirror.rolledBack(move);
            assertEquals(a, vm.mirroredSlots().get(5));
            // At its old place again: a slot over 0x100000 no longer overlaps.
            assertDoesNotThrow(() -> mirror.beforeCommit(new MemslotChange(Kind.CREATE, null, slot(6, 0x100000, ram.size, ram.addr, 0))));

            MemslotChange delete = new MemslotChange(Kind.DELETE, a, null);
            mirror.beforeCommit(delete);
            mirror.rolledBack(delete);
            assertEquals(a, vm.mirroredSlots().get(5));
            assertThrows(SyscallException.class, () -> mirror.beforeCommit(new MemslotChange(Kind.CREATE, null, slot(7, 0, PAGE, ram.addr, 0))));
            assertTrue(vm.mirrorFaults().isEmpty(), vm.mirrorFaults().toString());
        }
    }

    @Test
    void v1FallbackRefusesGuestMemfdNamingTheCapability() {
        try (KvmVm vm = KvmVm.open(KvmVm.Options.defaults().withRegion2(false)); GuestRam ram = GuestRam.anonymous(0x10000)) {
            assertFalse(vm.usesRegion2());
            MemslotObserver mirror = vm.memslotObserver();
            mirror.beforeCommit(new MemslotChange(Kind.CREATE, null, slot(0, 0, ram.size, ram.addr, 0)));
            assertEquals(1, vm.mirroredSlots().size());
            Memslot gmem = new Memslot(0, 1, 0x100, 1, ram.addr, Memslot.GUEST_MEMFD, 99, 0);
            KvmException e = assertThrows(KvmException.class, () -> mirror.beforeCommit(new MemslotChange(Kind.CREATE, null, gmem)));
            assertEquals(Errno.EINVAL, e.errno());
            // The first capability the slot lacks: region v2 where KVM has guest_memfd, else guest_memfd itself
            // (KVM_CAP_GUEST_MEMFD is 0 on 6.12 arm64).
            String missing = vm.capabilities().guestMemfd() ? "KVM_CAP_USER_MEMORY2" : "KVM_CAP_GUEST_MEMFD";
            assertTrue(e.getMessage().contains(missing), e.getMessage());
        }
    }

    @Test
    void closeOrderAndUseAfterClose() {
        KvmVm vm = KvmVm.open();
        GuestRam ram = GuestRam.anonymous(0x10000);
        try {
            MemslotObserver mirror = vm.memslotObserver();
            mirror.beforeCommit(new MemslotChange(Kind.CREATE, null, slot(0, 0, ram.size, ram.addr, 0)));
            Vcpu cpu = vm.createVcpu(0);
            KvmGuestMemfd g = vm.capabilities().guestMemfd() ? vm.createGuestMemfd(PAGE) : null;
            vm.close();
            assertDoesNotThrow(vm::close);
            assertTrue(vm.isClosed());
            assertThrows(IllegalStateException.class, cpu::run, "closing the VM closes its vCPUs");
            assertThrows(IllegalStateException.class, cpu::vcpuFd);
            assertThrows(IllegalStateException.class, () -> vm.createVcpu(1));
            assertThrows(IllegalStateException.class, vm::capabilities);
            assertThrows(IllegalStateException.class, () -> mirror.beforeCommit(
                    new MemslotChange(Kind.CREATE, null, slot(1, 0x100000, ram.size, ram.addr, 0))));
            if (g != null) {
                assertTrue(g.isClosed(), "the VM closes the guest_memfds it created");
                assertThrows(IllegalStateException.class, g::fd);
            }
        } finally {
            vm.close();
            ram.close();
        }
    }
}
