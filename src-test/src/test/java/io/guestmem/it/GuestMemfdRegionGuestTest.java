package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;

import io.guestmem.gmem.GuestMemfdBacking;
import io.guestmem.gmem.GuestMemfdRegion;
import io.guestmem.gmem.HostAccessRefusedException;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.kvm.x86.X86Cpu;
import io.guestmem.kvm.x86.X86GuestPrograms;
import io.guestmem.kvm.x86.X86Program;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.sys.Posix;
import java.io.File;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * A real KVM guest running from a {@link GuestMemfdRegion}'s slot (userspace_addr = the region's host mapping,
 * which this KVM's emulator needs): it sees what the host wrote through the region's accessors, and the host
 * sees the guest's writes. After toPrivate the library refuses host access to the page.
 */
@org.junit.jupiter.api.extension.ExtendWith(LeakGuard.class)
class GuestMemfdRegionGuestTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static final long GDT = 0x500, CODE = 0x1000, DATA = 0x4000;

    @Test
    void guestSeesHostWritesAndHostSeesGuestWrites() {
        File f = new File("/dev/kvm");
        if (!f.canRead() || !f.canWrite()) System.out.println("SKIP: /dev/kvm absent or not read-write");
        Assumptions.assumeTrue(f.canRead() && f.canWrite());
        try (KvmVm vm = KvmVm.open(); GuestMemfdRegion r = GuestMemfdRegion.create(vm, 0x10000)) {
            if (r.backing() != GuestMemfdBacking.GUEST_MEMFD) System.out.println("SKIP: " + r.backing());
            Assumptions.assumeTrue(r.backing() == GuestMemfdBacking.GUEST_MEMFD, "no MMAP|INIT_SHARED guest_memfd");
            X86Cpu.prepareVm(vm);
            vm.memslotObserver().beforeCommit(new MemslotChange(MemslotChange.Kind.CREATE, null, r.memslot(0, 0, 0)));
            Vcpu cpu = vm.createVcpu(0);
            byte[] gdt = X86GuestPrograms.flatGdt();
            r.write(GDT, gdt, 0, gdt.length);
            r.putLong(DATA, 0x6D656D66L);
            X86Program read = X86GuestPrograms.readU32ThenOut(CODE, DATA, 0x80);
            r.write(CODE, read.code(), 0, read.code().length);
            List<VcpuExit> exits = X86Cpu.run(cpu, read, GDT, 8);
            assertEquals(0x6D656D66L, assertInstanceOf(VcpuExit.Io.class, exits.get(0)).value(), "the guest sees the host's write");

            X86Program write = X86GuestPrograms.writeGfnToEveryPage(CODE, 0x8000, 8, 0x47);
            r.write(CODE, write.code(), 0, write.code().length);
            assertEquals(List.of(new VcpuExit.Hlt()), X86Cpu.run(cpu, write, GDT, 8));
            for (long gpa = 0x8000; gpa < 0x10000; gpa += 0x1000)
                assertEquals(X86GuestPrograms.pageValue(gpa >>> 12, 0x47), r.getLong(gpa), "the host sees the guest's write");

            r.zapHostMapping(0x8000, 0x8000);
            r.toPrivate(0x8000, 0x8000);
            assertThrows(HostAccessRefusedException.class, () -> r.getLong(0x9000));
            // This kernel has no in-place conversion: KVM itself still treats the page as shared, so the guest
            // keeps running from it; the library's state only governs the host side.
            X86Program reread = X86GuestPrograms.readU32ThenOut(CODE, 0x9000, 0x80);
            r.write(CODE, reread.code(), 0, reread.code().length);
            long seen = assertInstanceOf(VcpuExit.Io.class, X86Cpu.run(cpu, reread, GDT, 8).get(0)).value();
            System.out.println("guest reads a library-private page: 0x" + Long.toHexString(seen) + " (KVM does not know the library's state)");
            assertEquals(X86GuestPrograms.pageValue(9, 0x47) & 0xffffffffL, seen);
        }
    }
}
