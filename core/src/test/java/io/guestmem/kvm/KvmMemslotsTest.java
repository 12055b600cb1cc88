package io.guestmem.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotObserver;
import io.guestmem.memslot.Memslots;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The library's memslot writer with the KVM mirror registered: KVM's refusals veto, later vetoes undo KVM. */
class KvmMemslotsTest {
    static final long PAGE = Posix.PAGE_SIZE;

    @BeforeAll
    static void kvm() {
        KvmAvailable.assume();
    }

    @Test
    void configFollowsTheCapabilities() {
        try (KvmVm vm = KvmVm.open()) {
            Memslots.Config c = vm.memslotsConfig();
            KvmCapabilities caps = vm.capabilities();
            assertEquals(Math.min(caps.nrMemslots(), 65535), c.maxSlots());
            assertEquals(caps.addressSpaces(), c.addressSpaces());
            assertEquals(caps.readonlyMem(), c.readonlyMem());
            assertEquals(caps.guestMemfd(), c.privateMem());
            assertEquals(io.guestmem.procfs.AccessOk.limit(), c.userAddressLimit(), "access_ok's limit, read from the machine");
            assertSame(vm.guestMemfdTable(), c.guestMemfds(), "the VM's guest_memfds");
            assertEquals(vm.guestPhysLimit(), c.gpaLimit());
            if (!io.guestmem.sys.Arch.CURRENT.isX86()) assertEquals(1L << 40, c.gpaLimit(), "the default VM type's 40-bit IPA");
            System.out.println("memslot config for this KVM: " + c);
        }
        try (KvmVm v1 = KvmVm.open(KvmVm.Options.defaults().withRegion2(false))) {
            assertEquals(false, v1.memslotsConfig().privateMem(), "no guest_memfd slots without region v2");
        }
    }

    /**
     * The guest-physical bound is KVM's own (x86: {@code kvm_mmu_max_gfn()}, which userspace cannot compute; arm64:
     * the IPA size): a slot ending exactly at it is accepted by the writer and by KVM, the page just past it is refused
     * by both with the same errno, and on x86 the bound is at least cpuinfo's physical width.
     */
    @Test
    void theGuestPhysicalBoundIsKvmsOwn() {
        try (KvmVm vm = KvmVm.open()) {
            long limit = vm.guestPhysLimit();
            Assumptions.assumeTrue(limit > 0, "no guest-physical bound measured");
            Memslots slots = new Memslots(vm.memslotsConfig());
            slots.addObserver(vm.memslotObserver());
            long hva = 0x100000L;                       // KVM and the writer check only alignment and access_ok
            slots.setMemslot(0, 1, 0, limit - 2 * PAGE, 2 * PAGE, hva, -1, 0);
            assertTrue(vm.mirroredSlots().containsKey(1), "KVM holds the slot that ends at " + Long.toHexString(limit));
            KvmException past = assertThrows(KvmException.class,
                    () -> slots.setMemslot(0, 2, 0, limit, PAGE, hva, -1, 0));
            assertEquals(vm.memslotsConfig().gpaLimitErrno(), past.errno());
            SyscallException kvmSays = assertThrows(SyscallException.class,
                    () -> vm.vmFd().setUserMemoryRegion(2, 0, limit, PAGE, hva));
            assertEquals(past.errno().number, kvmSays.errno(), "KVM's own answer one page past the bound");
            if (io.guestmem.sys.Arch.CURRENT.isX86()) {
                int cpuinfo = cpuinfoPhysBits();
                assertTrue(cpuinfo == 0 || limit >= 1L << cpuinfo, "KVM's bound " + Long.toHexString(limit)
                        + " is below cpuinfo's " + cpuinfo + " bits");
            }
            System.out.println("guest-physical bound, measured: 0x" + Long.toHexString(limit));
        }
    }

    private static int cpuinfoPhysBits() {
        try {
            for (String line : java.nio.file.Files.readAllLines(java.nio.file.Path.of("/proc/cpuinfo"))) {
                java.util.regex.Matcher m = java.util.regex.Pattern.compile("^address sizes\\s*:\\s*(\\d+) bits physical").matcher(line);
                if (m.find()) return Integer.parseInt(m.group(1));
            }
        } catch (java.io.IOException e) {
            return 0;
        }
        return 0;
    }

    /**
     * kvm_gmem_bind's refusals (another VM's guest_memfd, a range past the file's end, two bindings of one file
     * overlapping): the writer answers them itself from the VM's guest_memfd table, with KVM's EINVAL, and the
     * same request straight through the VM fd shows that KVM answers EINVAL too.
     */
    @Test
    void guestMemfdBindingRefusalsAreTheWritersAndKvmsAlike() {
        try (KvmVm vm = KvmVm.open(); KvmVm other = KvmVm.open()) {
            Assumptions.assumeTrue(vm.capabilities().guestMemfdMmapShared(), "guest_memfd MMAP|INIT_SHARED not offered");
            Memslots slots = new Memslots(vm.memslotsConfig());
            slots.addObserver(vm.memslotObserver());
            KvmGuestMemfd mine = vm.createGuestMemfd(8 * PAGE), theirs = other.createGuestMemfd(8 * PAGE);
            long hva = mine.mapShared();
            int gm = io.guestmem.memslot.Memslot.GUEST_MEMFD;
            try (GuestRam ram = GuestRam.adopt(hva, mine.size())) {
                // Another VM's guest_memfd: EINVAL from the writer, and from kvm_gmem_bind.
                KvmException foreign = assertThrows(KvmException.class, () -> slots.setMemslot(0, 1,
                        gm, 0x100000, 4 * PAGE, hva, theirs.fd(), 0));
                assertEquals(Errno.EINVAL, foreign.errno());
                assertNull(slots.current(0).byId(1), "refused: not published");
                assertEquals(Errno.EINVAL.number, assertThrows(SyscallException.class, () -> vm.vmFd()
                        .setUserMemoryRegion2(1, gm, 0x100000, 4 * PAGE, hva, 0, theirs.fd())).errno());

                // A binding beyond the file's end: EINVAL from both.
                KvmException beyond = assertThrows(KvmException.class, () -> slots.setMemslot(0, 1,
                        gm, 0x100000, 4 * PAGE, hva, mine.fd(), 6 * PAGE));
                assertEquals(Errno.EINVAL, beyond.errno());
                assertEquals(Errno.EINVAL.number, assertThrows(SyscallException.class, () -> vm.vmFd()
                        .setUserMemoryRegion2(1, gm, 0x100000, 4 * PAGE, hva, 6 * PAGE, mine.fd())).errno());

                // Two slots (distinct gpas) bound to overlapping ranges of one guest_memfd: refused by both with the
                // same code, the one this KVM answers (EINVAL through 6.18, whose overlap check jumps to its EINVAL
                // exit; EEXIST on Debian's 7.3), which the VM measured for the writer.
                slots.setMemslot(0, 1, gm, 0x100000, 4 * PAGE, hva, mine.fd(), 0);
                KvmException overlap = assertThrows(KvmException.class, () -> slots.setMemslot(0, 2,
                        gm, 0x200000, 4 * PAGE, hva, mine.fd(), 2 * PAGE));
                System.out.println("overlapping guest_memfd bindings: " + overlap.getMessage());
                assertEquals(vm.guestMemfdTable().overlapErrno(), overlap.errno());
                assertEquals(overlap.errno().number, assertThrows(SyscallException.class, () -> vm.vmFd()
                        .setUserMemoryRegion2(2, gm, 0x200000, 4 * PAGE, hva, 2 * PAGE, mine.fd())).errno(),
                        "KVM's own code for the overlap");
                assertNull(slots.current(0).byId(2));
                assertEquals(1, vm.mirroredSlots().size());

                // The writer's own refusals never reach KVM: gmem + LOG_DIRTY is refused by the model first.
                KvmException model = assertThrows(KvmException.class, () -> slots.setMemslot(0, 3,
                        gm | io.guestmem.memslot.Memslot.LOG_DIRTY_PAGES, 0x300000, 4 * PAGE, hva, mine.fd(), 4 * PAGE));
                assertEquals(Errno.EINVAL, model.errno());
                // The rest of the file binds fine, by handle too.
                assertEquals(4, slots.setMemslot(0, 3, gm, 0x300000, 4 * PAGE, hva, mine, 4 * PAGE).updated().npages());
            }
        }
    }

    /**
     * A slot over a guest_memfd created without GUEST_MEMFD_FLAG_MMAP: arm64's KVM refuses it (EINVAL: only
     * gmem-only slots there), x86's takes it; the writer answers as this machine's KVM does, before KVM is asked.
     */
    @Test
    void aSlotOverANonMappableGuestMemfdIsAnsweredAsThisArchitecturesKvmDoes() {
        try (KvmVm vm = KvmVm.open(); KvmVm raw = KvmVm.open()) {
            Assumptions.assumeTrue(vm.capabilities().guestMemfd(), "no KVM_CAP_GUEST_MEMFD on this kernel");
            Memslots slots = new Memslots(vm.memslotsConfig());
            slots.addObserver(vm.memslotObserver());
            int gm = io.guestmem.memslot.Memslot.GUEST_MEMFD;
            try (GuestRam ram = GuestRam.anonymous(4 * PAGE);
                 KvmGuestMemfd plain = vm.createGuestMemfd(4 * PAGE, 0);
                 KvmGuestMemfd rawPlain = raw.createGuestMemfd(4 * PAGE, 0)) {
                assertEquals(false, plain.hostMappable());
                Errno kvm;
                try {
                    raw.vmFd().setUserMemoryRegion2(1, gm, 0x100000, 4 * PAGE, ram.addr, 0, rawPlain.fd());
                    kvm = null;
                } catch (SyscallException e) {
                    kvm = Errno.of(e.errno());
                }
                Errno writer;
                try {
                    slots.setMemslot(0, 1, gm, 0x100000, 4 * PAGE, ram.addr, plain, 0);
                    writer = null;
                } catch (KvmException e) {
                    writer = e.errno();
                    System.out.println("non-mappable guest_memfd slot: " + e.getMessage());
                }
                System.out.println("non-mappable guest_memfd slot on " + io.guestmem.sys.Arch.CURRENT.name() + ": KVM "
                        + (kvm == null ? "accepts" : kvm) + ", the writer " + (writer == null ? "accepts" : writer));
                assertEquals(kvm, writer, "the writer answers as this KVM");
                assertEquals(io.guestmem.sys.Arch.CURRENT.isX86() ? null : Errno.EINVAL, writer,
                        "x86 takes any guest_memfd, arm64 only a host-mappable one");
            }
        }
    }

    @Test
    void aLaterVetoUndoesWhatKvmAccepted() {
        try (KvmVm vm = KvmVm.open(); GuestRam ram = GuestRam.anonymous(16 * PAGE)) {
            Memslots slots = new Memslots(vm.memslotsConfig());
            slots.addObserver(vm.memslotObserver());
            RuntimeException veto = new RuntimeException("slot locker says no");
            boolean[] refuse = {false};
            slots.addObserver(new MemslotObserver() {
                @Override
                public void beforeCommit(MemslotChange change) {
                    if (refuse[0]) throw veto;
                }
            });
            slots.setMemslot(0, 0, 0, 0, 16 * PAGE, ram.addr);
            refuse[0] = true;
            assertSame(veto, assertThrows(RuntimeException.class, () -> slots.setMemslot(0, 0, 0, 0x100000, 16 * PAGE, ram.addr)));
            assertSame(veto, assertThrows(RuntimeException.class, () -> slots.deleteMemslot(0, 0)));
            assertSame(veto, assertThrows(RuntimeException.class, () -> slots.setMemslot(0, 1, 0, 0x200000, 16 * PAGE, ram.addr)));
            // KVM is back where the library is: slot 0 at gpa 0, nothing else.
            assertEquals(1, vm.mirroredSlots().size());
            assertEquals(slots.current(0).byId(0), vm.mirroredSlots().get(0));
            assertTrue(vm.mirrorFaults().isEmpty(), vm.mirrorFaults().toString());
            // And KVM really holds gpa 0: an overlapping slot straight through the VM fd is EEXIST.
            SyscallException e = assertThrows(SyscallException.class,
                    () -> vm.vmFd().setUserMemoryRegion2(9, 0, 0, PAGE, ram.addr, 0, 0));
            assertEquals(Errno.EEXIST.number, e.errno());
            // ... and 0x100000 / 0x200000 are free.
            vm.vmFd().setUserMemoryRegion2(9, 0, 0x100000, PAGE, ram.addr, 0, 0);
            vm.vmFd().setUserMemoryRegion2(10, 0, 0x200000, PAGE, ram.addr, 0, 0);
        }
    }
}
