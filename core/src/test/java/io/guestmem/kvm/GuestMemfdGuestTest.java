package io.guestmem.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.kvmapi.KvmIoctls;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotChange.Kind;
import io.guestmem.probe.GuestMemfdFiles;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** A guest running from a guest_memfd slot on the real KVM, and the guest_memfd facts of this kernel. */
class GuestMemfdGuestTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static final long CODE = 0x1000, DATA = 0x4000;
    static final GuestCpu G = GuestCpu.current();

    @BeforeAll
    static void kvm() {
        KvmAvailable.assume();
    }

    /** Skips with the reason where this KVM has no guest_memfd at all (KVM_CAP_GUEST_MEMFD = 0, e.g. 6.12 arm64). */
    static void assumeGuestMemfd(KvmVm vm) {
        boolean ok = vm.capabilities().guestMemfd();
        String why = "KVM_CAP_GUEST_MEMFD is 0 on this kernel (" + io.guestmem.sys.Arch.CURRENT.name() + ")";
        if (!ok) System.out.println("SKIP: " + why);
        Assumptions.assumeTrue(ok, why);
    }

    static void assumeMmapShared(KvmVm vm) {
        assumeGuestMemfd(vm);
        boolean ok = vm.capabilities().guestMemfdMmapShared();
        if (!ok) System.out.println("SKIP: guest_memfd without MMAP|INIT_SHARED: " + vm.capabilities());
        Assumptions.assumeTrue(ok, "guest_memfd MMAP|INIT_SHARED not offered");
    }

    @Test
    void guestRunsFromGuestMemfdAndBothSidesSeeEachOthersWrites() {
        try (KvmVm vm = KvmVm.open()) {
            assumeMmapShared(vm);
            KvmGuestMemfd g = vm.createGuestMemfd(0x10000);
            assertEquals(KvmIoctls.GUEST_MEMFD_FLAG_MMAP | KvmIoctls.GUEST_MEMFD_FLAG_INIT_SHARED, g.flags());
            try (GuestRam ram = GuestRam.adopt(g.mapShared(), g.size())) {
                G.prepareVm(vm);
                // Slot 0 at gpa 0 is the guest_memfd; its hva is the host mapping (the emulator reads through it).
                vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                        new Memslot(0, 0, 0, g.size() / PAGE, ram.addr, Memslot.GUEST_MEMFD, g.fd(), 0)));
                Vcpu cpu = vm.createVcpu(0);

                // The host writes code and a value; the guest executes that code and reads the value.
                ram.putU64(DATA, 0xC0FFEE42L);
                GuestProgram read = G.readAndReport(CODE, DATA);
                ram.load(read, 0);
                List<VcpuExit> exits = G.runToCompletion(cpu, read, 8);
                assertEquals(0xC0FFEE42L, G.reported(exits).orElseThrow(() -> new AssertionError(exits.toString())),
                        "the guest sees what the host wrote");

                // The guest writes its pages; the host sees them through the same mapping.
                int tag = 0x676d656d;
                GuestProgram write = G.writeGfnToEveryPage(CODE, 0x8000, 8, tag);
                ram.load(write, 0);
                assertEquals(List.of(), G.runToCompletion(cpu, write, 8));
                for (long gpa = 0x8000; gpa < 0x10000; gpa += 0x1000)
                    assertEquals(GuestCpu.pageValue(gpa >>> 12, tag), ram.u64(gpa), "gpa 0x" + Long.toHexString(gpa));

                // Punching a hole zeroes the page for the host and for the guest. A hole is whole host pages (4K
                // or 16K here): the one at 0x8000, and the next host page, still written, must stay intact.
                long hole = 0x8000, next = hole + PAGE;
                Assumptions.assumeTrue(next < 0x10000, "host pages of " + PAGE + " B are larger than the written range");
                g.punchHole(hole, PAGE);
                assertEquals(0, ram.u64(hole), "punched page reads zero");
                assertEquals(GuestCpu.pageValue(next >>> 12, tag), ram.u64(next), "the next page is intact");
                GuestProgram reread = G.readAndReport(CODE, hole);
                ram.load(reread, 0);
                List<VcpuExit> again = G.runToCompletion(cpu, reread, 8);
                assertEquals(0, G.reported(again).orElseThrow(() -> new AssertionError(again.toString())),
                        "the guest sees the hole too");
            }
        }
    }

    @Test
    void guestMemfdFactsOfThisKernel() {
        try (KvmVm vm = KvmVm.open()) {
            assumeGuestMemfd(vm);
            // read()/write() on the fd fail.
            try (KvmGuestMemfd g = vm.createGuestMemfd(4 * PAGE)) {
                long r = GuestMemfdFiles.readRaw(g.fd(), PAGE), w = GuestMemfdFiles.writeRaw(g.fd(), PAGE);
                System.out.println("guest_memfd read() -> " + Errno.nameOf((int) -r) + ", write() -> " + Errno.nameOf((int) -w));
                assertTrue(r < 0, "read() must fail on a guest_memfd, got " + r);
                assertTrue(w < 0, "write() must fail on a guest_memfd, got " + w);
                // MAP_PRIVATE is refused even with MMAP.
                if (g.mmapShared()) {
                    SyscallException p = assertThrows(SyscallException.class,
                            () -> Mman.mmap(0, PAGE, Mman.PROT_READ, Mman.MAP_PRIVATE, g.fd(), 0));
                    assertEquals(Errno.EINVAL.number, p.errno());
                }
            }
            // Without the MMAP flag, mmap fails (ENODEV); the library refuses to map it at all.
            try (KvmGuestMemfd plain = vm.createGuestMemfd(4 * PAGE, 0)) {
                SyscallException e = assertThrows(SyscallException.class,
                        () -> Mman.mmap(0, PAGE, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, plain.fd(), 0));
                assertEquals(Errno.ENODEV.number, e.errno(), e.getMessage());
                assertThrows(KvmException.class, plain::mapShared);
            }
            // MMAP without INIT_SHARED: mapping would SIGBUS on touch, so the library refuses to hand it out.
            if ((vm.capabilities().guestMemfdFlags() & KvmIoctls.GUEST_MEMFD_FLAG_MMAP) != 0) {
                try (KvmGuestMemfd mmapOnly = vm.createGuestMemfd(PAGE, KvmIoctls.GUEST_MEMFD_FLAG_MMAP)) {
                    KvmException e = assertThrows(KvmException.class, mmapOnly::mapShared);
                    assertTrue(e.getMessage().contains("INIT_SHARED"), e.getMessage());
                }
            }
            // A size that is not page-aligned is refused.
            SyscallException e = assertThrows(SyscallException.class, () -> vm.createGuestMemfd(PAGE + 512));
            assertEquals(Errno.EINVAL.number, e.errno());
            assertTrue(e.getMessage().contains("KVM_CREATE_GUEST_MEMFD"), e.getMessage());
            // Flags KVM does not report are refused.
            long unsupported = Long.lowestOneBit(~vm.capabilities().guestMemfdFlags());
            SyscallException f = assertThrows(SyscallException.class, () -> vm.createGuestMemfd(PAGE, unsupported));
            assertEquals(Errno.EINVAL.number, f.errno());
        }
    }
}
