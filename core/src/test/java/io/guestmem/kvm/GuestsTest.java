package io.guestmem.kvm;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotChange.Kind;
import io.guestmem.sys.Posix;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The architecture-neutral guests ({@link GuestCpu#current()}: x86 flat32 ending in HLT, arm64 EL1 ending in
 * PSCI SYSTEM_OFF) against real KVM: every page written with its own value, a read-only slot's store exiting
 * as MMIO write with memory unchanged, a read reported to the host, and a bounded run.
 */
class GuestsTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static final long CODE = 0x1000;
    static final long BOOT = 0x40000; // 256 KiB: a whole number of 4K and 16K host pages

    @BeforeAll
    static void kvm() {
        KvmAvailable.assume();
    }

    static Vcpu boot(KvmVm vm, GuestRam boot) {
        GuestCpu.current().prepareVm(vm);
        vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                new Memslot(0, 0, 0, boot.size / PAGE, boot.addr, 0, -1, 0)));
        return vm.createVcpu(0);
    }

    static List<VcpuExit> run(Vcpu cpu, GuestRam boot, GuestProgram p) {
        boot.load(p, 0);
        return GuestCpu.current().runToCompletion(cpu, p, 16);
    }

    @Test
    void guestWritesEveryPageAbove1MiB() {
        GuestCpu g = GuestCpu.current();
        long base = 0x200000, pages = 32;
        try (KvmVm vm = KvmVm.open(); GuestRam ram = GuestRam.anonymous(BOOT);
             GuestRam data = GuestRam.anonymous(pages * GuestCpu.GUEST_PAGE)) {
            Vcpu cpu = boot(vm, ram);
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                    new Memslot(0, 1, base / PAGE, data.size / PAGE, data.addr, 0, -1, 0)));
            int tag = 0x6d656d67;
            List<VcpuExit> exits = run(cpu, ram, g.writeGfnToEveryPage(CODE, base, pages, tag));
            assertEquals(List.of(), exits, g.arch() + ": nothing but the clean end");
            for (long i = 0; i < pages; i++) {
                long gpa = base + i * GuestCpu.GUEST_PAGE;
                assertEquals(GuestCpu.pageValue(gpa >>> 12, tag), data.u64(i * GuestCpu.GUEST_PAGE),
                        "page at gpa 0x" + Long.toHexString(gpa));
                assertEquals(0, data.u64(i * GuestCpu.GUEST_PAGE + 8), "nothing past the value");
            }
        }
    }

    @Test
    void guestChecksEveryPageAndRewritesIt() {
        GuestCpu g = GuestCpu.current();
        long base = 0x200000, pages = 32;
        try (KvmVm vm = KvmVm.open(); GuestRam ram = GuestRam.anonymous(BOOT);
             GuestRam data = GuestRam.anonymous(pages * GuestCpu.GUEST_PAGE)) {
            Vcpu cpu = boot(vm, ram);
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                    new Memslot(0, 1, base / PAGE, data.size / PAGE, data.addr, 0, -1, 0)));
            int t1 = 0x11, t2 = 0x22;
            for (long i = 0; i < pages; i++) data.putU64(i * GuestCpu.GUEST_PAGE, GuestCpu.pageValue((base >>> 12) + i, t1));
            // three pages the guest must catch: a wrong gfn, a wrong tag, a zero page
            data.putU64(3 * GuestCpu.GUEST_PAGE, GuestCpu.pageValue(base >>> 12, t1));
            data.putU64(17 * GuestCpu.GUEST_PAGE, GuestCpu.pageValue((base >>> 12) + 17, t2));
            data.putU64(31 * GuestCpu.GUEST_PAGE, 0);
            List<VcpuExit> exits = run(cpu, ram, g.checkAndRewriteEveryPage(CODE, base, pages, t1, t2));
            assertEquals(3L, g.reported(exits).orElseThrow(() -> new AssertionError("no report in " + exits)),
                    g.arch() + ": the three pages that differ");
            for (long i = 0; i < pages; i++)
                assertEquals(GuestCpu.pageValue((base >>> 12) + i, t2), data.u64(i * GuestCpu.GUEST_PAGE), "page " + i);
            List<VcpuExit> again = run(cpu, ram, g.checkAndRewriteEveryPage(CODE, base, pages, t2, t1));
            assertEquals(0L, g.reported(again).orElseThrow(), "every page as the guest left it");
        }
    }

    @Test
    void writeToReadOnlySlotExitsAsMmioAndLeavesMemory() {
        GuestCpu g = GuestCpu.current();
        try (KvmVm vm = KvmVm.open(); GuestRam ram = GuestRam.anonymous(BOOT); GuestRam ro = GuestRam.anonymous(4 * PAGE)) {
            org.junit.jupiter.api.Assumptions.assumeTrue(vm.capabilities().readonlyMem(), "no KVM_CAP_READONLY_MEM");
            Vcpu cpu = boot(vm, ram);
            ro.putU64(0, 0x1122334455667788L);
            long roGpa = 0x100000;
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                    new Memslot(0, 2, roGpa / PAGE, 4, ro.addr, Memslot.READONLY, -1, 0)));
            List<VcpuExit> exits = run(cpu, ram, g.storeByte(CODE, roGpa, 0xEE));
            assertEquals(1, exits.size(), exits.toString());
            VcpuExit.Mmio m = assertInstanceOf(VcpuExit.Mmio.class, exits.get(0));
            assertEquals(roGpa, m.gpa());
            assertTrue(m.isWrite());
            assertArrayEquals(new byte[] {(byte) 0xEE}, m.data());
            assertEquals(0x1122334455667788L, ro.u64(0), "a read-only slot keeps its bytes");

            // The guest reads the slot fine: it reports the low half of what the host put there.
            List<VcpuExit> read = run(cpu, ram, g.readAndReport(CODE, roGpa));
            assertEquals(0x55667788L, g.reported(read).orElseThrow(() -> new AssertionError("no report in " + read)));
        }
    }

    @Test
    void runToCompletionIsBounded() {
        GuestCpu g = GuestCpu.current();
        try (KvmVm vm = KvmVm.open(); GuestRam ram = GuestRam.anonymous(BOOT)) {
            Vcpu cpu = boot(vm, ram);
            // 8 pages from an unbacked gpa: each store exits as MMIO, so 3 exits cannot reach the end.
            GuestProgram p = g.writeGfnToEveryPage(CODE, 0x10000000, 8, 1);
            ram.load(p, 0);
            GuestRunException e = assertThrows(GuestRunException.class, () -> g.runToCompletion(cpu, p, 3));
            assertEquals(3, e.exits().size());
            for (VcpuExit x : e.exits()) assertInstanceOf(VcpuExit.Mmio.class, x);
        }
    }
}
