package io.guestmem.kvm.x86;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.kvm.GuestRam;
import io.guestmem.kvm.GuestRunException;
import io.guestmem.kvm.KvmAvailable;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.kvmapi.X86Regs;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotChange.Kind;
import io.guestmem.sys.Posix;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The tiny guests run on the real KVM and do exactly what their bytes say. */
class X86GuestsTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static final long GDT = 0x500, CODE = 0x1000;

    @BeforeAll
    static void kvm() {
        KvmAvailable.assumeX86("real mode, flat32 segments, x86 registers");
    }

    /** A VM with a 64 KiB boot slot at gpa 0 holding the flat GDT. */
    static Vcpu boot(KvmVm vm, GuestRam boot) {
        X86Cpu.prepareVm(vm);
        boot.load(GDT, X86GuestPrograms.flatGdt());
        vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                new Memslot(0, 0, 0, boot.size / PAGE, boot.addr, 0, -1, 0)));
        return vm.createVcpu(0);
    }

    static List<VcpuExit> run(Vcpu cpu, GuestRam boot, X86Program p) {
        boot.load(p.loadGpa(), p.code());
        return X86Cpu.run(cpu, p, GDT, 16);
    }

    @Test
    void outThenHlt() {
        try (KvmVm vm = KvmVm.open(); GuestRam ram = GuestRam.anonymous(0x10000)) {
            Vcpu cpu = boot(vm, ram);
            List<VcpuExit> exits = run(cpu, ram, X86GuestPrograms.outByteThenHlt(CODE, 0x3f8, 0x42));
            assertEquals(2, exits.size(), exits.toString());
            VcpuExit.Io io = assertInstanceOf(VcpuExit.Io.class, exits.get(0));
            assertEquals(0x3f8, io.port());
            assertEquals(VcpuExit.Io.Direction.OUT, io.direction());
            assertEquals(1, io.size());
            assertEquals(1, io.count());
            assertEquals(0x42, io.value());
            assertInstanceOf(VcpuExit.Hlt.class, exits.get(1));
            // RIP stands after the hlt: 7 bytes of code.
            assertEquals(CODE + 7, X86Cpu.regs(cpu).get(X86Regs.Reg.RIP));
        }
    }

    @Test
    void flat32GuestWritesEveryPageAbove1MiB() {
        long base = 0x200000, pages = 32; // 2 MiB, above real mode's reach
        try (KvmVm vm = KvmVm.open(); GuestRam ram = GuestRam.anonymous(0x10000);
             GuestRam data = GuestRam.anonymous(pages * X86GuestPrograms.GUEST_PAGE)) {
            Vcpu cpu = boot(vm, ram);
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                    new Memslot(0, 1, base / PAGE, data.size / PAGE, data.addr, 0, -1, 0)));
            int tag = 0x6d656d67;
            List<VcpuExit> exits = run(cpu, ram, X86GuestPrograms.writeGfnToEveryPage(CODE, base, pages, tag));
            assertEquals(List.of(new VcpuExit.Hlt()), exits);
            for (long i = 0; i < pages; i++) {
                long gpa = base + i * X86GuestPrograms.GUEST_PAGE;
                assertEquals(X86GuestPrograms.pageValue(gpa >>> 12, tag), data.u64(i * X86GuestPrograms.GUEST_PAGE),
                        "page at gpa 0x" + Long.toHexString(gpa));
                assertEquals(0, data.u64(i * X86GuestPrograms.GUEST_PAGE + 8), "nothing past the value");
            }
            // ECX counted down to 0, ESI stepped past the range.
            X86Regs r = X86Cpu.regs(cpu);
            assertEquals(0, r.get(X86Regs.Reg.RCX) & 0xffffffffL);
            assertEquals(base + pages * X86GuestPrograms.GUEST_PAGE, r.get(X86Regs.Reg.RSI) & 0xffffffffL);
        }
    }

    @Test
    void writeToReadOnlySlotExitsAsMmioAndLeavesMemory() {
        try (KvmVm vm = KvmVm.open(); GuestRam ram = GuestRam.anonymous(0x10000); GuestRam ro = GuestRam.anonymous(4 * PAGE)) {
            Vcpu cpu = boot(vm, ram);
            ro.putU64(0, 0x1122334455667788L);
            long roGpa = 0x80000;
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                    new Memslot(0, 2, roGpa / PAGE, 4, ro.addr, Memslot.READONLY, -1, 0)));
            List<VcpuExit> exits = run(cpu, ram, X86GuestPrograms.storeByteReal(CODE, roGpa, 0xEE));
            assertEquals(2, exits.size(), exits.toString());
            VcpuExit.Mmio m = assertInstanceOf(VcpuExit.Mmio.class, exits.get(0));
            assertEquals(roGpa, m.gpa());
            assertTrue(m.isWrite());
            assertArrayEquals(new byte[] {(byte) 0xEE}, m.data());
            assertInstanceOf(VcpuExit.Hlt.class, exits.get(1));
            assertEquals(0x1122334455667788L, ro.u64(0), "a read-only slot keeps its bytes");

            // The same through flat 32-bit mode, one page further.
            exits = run(cpu, ram, X86GuestPrograms.storeByteFlat32(CODE, roGpa + 0x1000, 0xDD));
            VcpuExit.Mmio m2 = assertInstanceOf(VcpuExit.Mmio.class, exits.get(0));
            assertEquals(roGpa + 0x1000, m2.gpa());
            assertEquals(0, ro.u8(0x1000));
        }
    }

    @Test
    void runToHltIsBounded() {
        try (KvmVm vm = KvmVm.open(); GuestRam ram = GuestRam.anonymous(0x10000)) {
            Vcpu cpu = boot(vm, ram);
            // out; jmp back to the out: never halts, one IO exit per loop.
            byte[] spin = {(byte) 0xBA, (byte) 0xf8, 0x03, (byte) 0xEE, (byte) 0xEB, (byte) 0xFD}; // mov dx,0x3f8; out dx,al; jmp -3
            X86Program p = new X86Program("spin", X86Mode.REAL, CODE, spin);
            ram.load(CODE, spin);
            X86Cpu.enter(cpu, p, 0);
            GuestRunException e = assertThrows(GuestRunException.class, () -> cpu.runToHlt(5));
            assertEquals(5, e.exits().size());
        }
    }
}
