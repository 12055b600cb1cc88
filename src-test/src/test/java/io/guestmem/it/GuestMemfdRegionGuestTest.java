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
import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.GuestProgram;
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
    static final long CODE = 0x1000, DATA = 0x4000;

    @Test
    void guestSeesHostWritesAndHostSeesGuestWrites() {
        File f = new File("/dev/kvm");
        if (!f.canRead() || !f.canWrite()) System.out.println("SKIP: /dev/kvm absent or not read-write");
        Assumptions.assumeTrue(f.canRead() && f.canWrite());
        try (KvmVm vm = KvmVm.open(); GuestMemfdRegion r = GuestMemfdRegion.create(vm, 0x10000)) {
            String why = "no MMAP|INIT_SHARED guest_memfd (backing " + r.backing() + "; KVM_CAP_GUEST_MEMFD = "
                    + (vm.capabilities().guestMemfd() ? 1 : 0) + ")";
            if (r.backing() != GuestMemfdBacking.GUEST_MEMFD) System.out.println("SKIP: " + why);
            Assumptions.assumeTrue(r.backing() == GuestMemfdBacking.GUEST_MEMFD, why);
            GuestCpu g = GuestCpu.current();
            g.prepareVm(vm);
            vm.memslotObserver().beforeCommit(new MemslotChange(MemslotChange.Kind.CREATE, null, r.memslot(0, 0, 0)));
            Vcpu cpu = vm.createVcpu(0);
            r.putLong(DATA, 0x6D656D66L);
            GuestProgram read = g.readAndReport(CODE, DATA);
            load(r, read);
            List<VcpuExit> exits = g.runToCompletion(cpu, read, 8);
            assertEquals(0x6D656D66L, g.reported(exits).orElseThrow(() -> new AssertionError(exits.toString())),
                    "the guest sees the host's write");

            GuestProgram write = g.writeGfnToEveryPage(CODE, 0x8000, 8, 0x47);
            load(r, write);
            assertEquals(List.of(), g.runToCompletion(cpu, write, 8));
            for (long gpa = 0x8000; gpa < 0x10000; gpa += 0x1000)
                assertEquals(GuestCpu.pageValue(gpa >>> 12, 0x47), r.getLong(gpa), "the host sees the guest's write");

            r.zapHostMapping(0x8000, 0x8000);
            r.toPrivate(0x8000, 0x8000);
            assertThrows(HostAccessRefusedException.class, () -> r.getLong(0x9000));
            // This kernel has no in-place conversion: KVM itself still treats the page as shared, so the guest
            // keeps running from it; the library's state only governs the host side.
            GuestProgram reread = g.readAndReport(CODE, 0x9000);
            load(r, reread);
            List<VcpuExit> again = g.runToCompletion(cpu, reread, 8);
            long seen = g.reported(again).orElseThrow(() -> new AssertionError(again.toString()));
            System.out.println("guest reads a library-private page: 0x" + Long.toHexString(seen) + " (KVM does not know the library's state)");
            assertEquals(GuestCpu.pageValue(9, 0x47) & 0xffffffffL, seen);
        }
    }

    /** The region is the slot at gpa 0: each chunk goes at its gpa. */
    static void load(GuestMemfdRegion r, GuestProgram p) {
        for (GuestProgram.Chunk c : p.image()) r.write(c.gpa(), c.bytes(), 0, c.bytes().length);
    }
}
