package io.guestmem.kvm.x86;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.kvm.GuestRam;
import io.guestmem.kvm.KvmAvailable;
import io.guestmem.kvm.KvmGuestMemfd;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.kvmapi.GuestMemfdFiles;
import io.guestmem.kvmapi.KvmIoctls;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotChange.Kind;
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
    static final long GDT = 0x500, CODE = 0x1000, DATA = 0x4000;
    static final int PORT = 0x80;

    @BeforeAll
    static void kvm() {
        KvmAvailable.assume();
    }

    static void assumeMmapShared(KvmVm vm) {
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
                X86Cpu.prepareVm(vm);
                // Slot 0 at gpa 0 is the guest_memfd; its hva is the host mapping (the emulator reads through it).
                vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                        new Memslot(0, 0, 0, g.size() / PAGE, ram.addr, Memslot.GUEST_MEMFD, g.fd(), 0)));
                Vcpu cpu = vm.createVcpu(0);

                // The host writes code, GDT and a value; the guest executes that code and reads the value.
                ram.load(GDT, X86GuestPrograms.flatGdt());
                ram.putU64(DATA, 0xC0FFEE42L);
                X86Program read = X86GuestPrograms.readU32ThenOut(CODE, DATA, PORT);
                ram.load(CODE, read.code());
                List<VcpuExit> exits = X86Cpu.run(cpu, read, GDT, 8);
                VcpuExit.Io io = assertInstanceOf(VcpuExit.Io.class, exits.get(0), exits.toString());
                assertEquals(0xC0FFEE42L, io.value(), "the guest sees what the host wrote");

                // The guest writes its pages; the host sees them through the same mapping.
                int tag = 0x676d656d;
                X86Program write = X86GuestPrograms.writeGfnToEveryPage(CODE, 0x8000, 8, tag);
                ram.load(CODE, write.code());
                assertEquals(List.of(new VcpuExit.Hlt()), X86Cpu.run(cpu, write, GDT, 8));
                for (long gpa = 0x8000; gpa < 0x10000; gpa += 0x1000)
                    assertEquals(X86GuestPrograms.pageValue(gpa >>> 12, tag), ram.u64(gpa), "gpa 0x" + Long.toHexString(gpa));

                // Punching a hole zeroes the page for the host and for the guest.
                g.punchHole(0x9000, PAGE);
                assertEquals(0, ram.u64(0x9000), "punched page reads zero");
                assertEquals(X86GuestPrograms.pageValue(0xa, tag), ram.u64(0xa000), "the next page is intact");
                X86Program reread = X86GuestPrograms.readU32ThenOut(CODE, 0x9000, PORT);
                ram.load(CODE, reread.code());
                exits = X86Cpu.run(cpu, reread, GDT, 8);
                assertEquals(0, assertInstanceOf(VcpuExit.Io.class, exits.get(0)).value(), "the guest sees the hole too");
            }
        }
    }

    @Test
    void guestMemfdFactsOfThisKernel() {
        try (KvmVm vm = KvmVm.open()) {
            Assumptions.assumeTrue(vm.capabilities().guestMemfd(), "no KVM_CAP_GUEST_MEMFD");
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
