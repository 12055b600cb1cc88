package io.guestmem.kvm.x86;

import io.guestmem.kvm.*;
import io.guestmem.kvmapi.*;
import io.guestmem.memslot.*;
import io.guestmem.memslot.MemslotChange.Kind;
import io.guestmem.sys.Posix;
import java.util.*;
import org.junit.jupiter.api.Test;

class DirtyProbeTest {
    static final long PAGE = 4096, GDT = 0x500, CODE = 0x1000, BASE = 0x80000;

    static String bits(long[] b) { StringBuilder s = new StringBuilder(); for (int i = 0; i < b.length * 64; i++) if ((b[i/64] >>> (i%64) & 1) != 0) s.append(i).append(' '); return "[" + s + "]"; }

    void probe(String name, boolean flat, boolean prefault, boolean logAfterCreate) {
        try (KvmVm vm = KvmVm.open(); GuestRam boot = GuestRam.anonymous(0x10000); GuestRam data = GuestRam.anonymous(16 * PAGE)) {
            X86Cpu.prepareVm(vm);
            boot.load(GDT, X86GuestPrograms.flatGdt());
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null, new Memslot(0, 0, 0, 16, boot.addr, 0, -1, 0)));
            if (prefault) for (int i = 0; i < 16; i++) data.putU64(i * PAGE, 1);
            Memslot s = new Memslot(0, 1, BASE / PAGE, 16, data.addr, logAfterCreate ? 0 : Memslot.LOG_DIRTY_PAGES, -1, 0);
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null, s));
            Vcpu cpu = vm.createVcpu(0);
            if (logAfterCreate) {
                // guest touches everything first (so KVM has mappings), then enable logging
                X86Program all = X86GuestPrograms.writeGfnToEveryPage(CODE, BASE, 16, 1);
                boot.load(CODE, all.code()); X86Cpu.run(cpu, all, GDT, 8);
                Memslot l = new Memslot(0, 1, BASE / PAGE, 16, data.addr, Memslot.LOG_DIRTY_PAGES, -1, 0);
                vm.memslotObserver().beforeCommit(new MemslotChange(Kind.FLAGS_ONLY, s, l));
                s = l;
            }
            System.out.println(name + " before: " + bits(vm.vmFd().getDirtyLog(1, 16)));
            for (long[] r : new long[][] {{2, 2}, {5, 1}}) {
                X86Program p = flat ? X86GuestPrograms.writeGfnToEveryPage(CODE, BASE + r[0] * PAGE, r[1], 7)
                        : X86GuestPrograms.storeByteReal(CODE, BASE + r[0] * PAGE, 0x77);
                boot.load(CODE, p.code());
                X86Cpu.run(cpu, p, GDT, 8);
                if (!flat && r[1] == 2) { p = X86GuestPrograms.storeByteReal(CODE, BASE + 3 * PAGE, 0x77); boot.load(CODE, p.code()); X86Cpu.run(cpu, p, GDT, 8); }
            }
            System.out.println(name + " mem: p2=" + Long.toHexString(data.u64(2*PAGE)) + " p3=" + Long.toHexString(data.u64(3*PAGE)) + " p5=" + Long.toHexString(data.u64(5*PAGE)));
            System.out.println(name + " after guest: " + bits(vm.vmFd().getDirtyLog(1, 16)) + " boot slot? ");
            System.out.println(name + " again: " + bits(vm.vmFd().getDirtyLog(1, 16)));
        }
    }

    @Test void probes() {
        probe("real", false, false, false);
        probe("flat32", true, false, false);
        probe("flat32+prefault", true, true, false);
        probe("flat32+logAfterTouch", true, false, true);
    }

    @Test void sameSlotAsCode() {
        for (boolean flat : new boolean[] {false, true})
        try (KvmVm vm = KvmVm.open(); GuestRam boot = GuestRam.anonymous(0x10000)) {
            X86Cpu.prepareVm(vm);
            boot.load(GDT, X86GuestPrograms.flatGdt());
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null, new Memslot(0, 0, 0, 16, boot.addr, Memslot.LOG_DIRTY_PAGES, -1, 0)));
            Vcpu cpu = vm.createVcpu(0);
            System.out.println("same-slot flat=" + flat + " before: " + bits(vm.vmFd().getDirtyLog(0, 16)));
            for (long pg : new long[] {2, 3, 5}) {
                X86Program p = flat ? X86GuestPrograms.storeByteFlat32(CODE, pg * PAGE, 0x77) : X86GuestPrograms.storeByteReal(CODE, pg * PAGE, 0x77);
                boot.load(CODE, p.code());
                System.out.println(X86Cpu.run(cpu, p, GDT, 8));
            }
            System.out.println("same-slot flat=" + flat + " mem " + boot.u8(2*PAGE) + " after: " + bits(vm.vmFd().getDirtyLog(0, 16)));
            X86Program p = X86GuestPrograms.storeByteReal(CODE, 5 * PAGE, 0x78);
            boot.load(CODE, p.code()); X86Cpu.run(cpu, p, GDT, 8);
            System.out.println("same-slot flat=" + flat + " second run: " + bits(vm.vmFd().getDirtyLog(0, 16)));
        }
    }

    @Test void logAtIoExit() {
        try (KvmVm vm = KvmVm.open(); GuestRam boot = GuestRam.anonymous(0x10000); GuestRam data = GuestRam.anonymous(16 * PAGE)) {
            X86Cpu.prepareVm(vm);
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null, new Memslot(0, 0, 0, 16, boot.addr, 0, -1, 0)));
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null, new Memslot(0, 1, BASE / PAGE, 16, data.addr, Memslot.LOG_DIRTY_PAGES, -1, 0)));
            Vcpu cpu = vm.createVcpu(0);
            int seg = (int) (BASE >>> 4);
            byte[] code = {(byte) 0xB8, (byte) seg, (byte) (seg >>> 8), (byte) 0x8E, (byte) 0xD8,
                (byte) 0xC6, 0x06, 0x00, 0x20, 0x11, (byte) 0xC6, 0x06, 0x00, 0x30, 0x22, (byte) 0xC6, 0x06, 0x00, 0x50, 0x33,
                (byte) 0xBA, (byte) 0x80, 0x00, (byte) 0xEE, (byte) 0xF4};
            boot.load(CODE, code);
            X86Cpu.enterRealMode(cpu, CODE);
            VcpuExit e = cpu.run();
            System.out.println("io-exit: " + e + " mem p2=" + data.u8(2*PAGE) + " p3=" + data.u8(3*PAGE) + " p5=" + data.u8(5*PAGE) + " log=" + bits(vm.vmFd().getDirtyLog(1, 16)));
            e = cpu.run();
            System.out.println("hlt-exit: " + e + " log=" + bits(vm.vmFd().getDirtyLog(1, 16)));
        }
    }

    @Test void sharedAnon() {
        long size = 16 * PAGE;
        long addr = io.guestmem.sys.Mman.mmap(0, size, 3, io.guestmem.sys.Mman.MAP_SHARED | io.guestmem.sys.Mman.MAP_ANONYMOUS, -1, 0);
        try (KvmVm vm = KvmVm.open(); GuestRam boot = GuestRam.anonymous(0x10000); GuestRam data = GuestRam.adopt(addr, size)) {
            X86Cpu.prepareVm(vm);
            boot.load(GDT, X86GuestPrograms.flatGdt());
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null, new Memslot(0, 0, 0, 16, boot.addr, 0, -1, 0)));
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null, new Memslot(0, 1, BASE / PAGE, 16, data.addr, Memslot.LOG_DIRTY_PAGES, -1, 0)));
            Vcpu cpu = vm.createVcpu(0);
            X86Program p = X86GuestPrograms.writeGfnToEveryPage(CODE, BASE + 2 * PAGE, 2, 7);
            boot.load(CODE, p.code()); X86Cpu.run(cpu, p, GDT, 8);
            System.out.println("shared-anon log=" + bits(vm.vmFd().getDirtyLog(1, 16)) + " p2=" + Long.toHexString(data.u64(2*PAGE)));
        }
    }

    @Test void ring() {
        try (KvmVm vm = KvmVm.open(KvmVm.Options.defaults().withDirtyRing(65536)); GuestRam boot = GuestRam.anonymous(0x10000); GuestRam data = GuestRam.anonymous(16 * PAGE)) {
            X86Cpu.prepareVm(vm);
            boot.load(GDT, X86GuestPrograms.flatGdt());
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null, new Memslot(0, 0, 0, 16, boot.addr, 0, -1, 0)));
            vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null, new Memslot(0, 1, BASE / PAGE, 16, data.addr, Memslot.LOG_DIRTY_PAGES, -1, 0)));
            Vcpu cpu = vm.createVcpu(0);
            X86Program p = X86GuestPrograms.writeGfnToEveryPage(CODE, BASE + 2 * PAGE, 2, 7);
            boot.load(CODE, p.code());
            System.out.println("ring exits " + X86Cpu.run(cpu, p, GDT, 8));
            KvmDirtyRing ring = cpu.vcpuFd().mapDirtyRing(65536);
            for (int i = 0; i < 16; i++) System.out.println("ring[" + i + "] flags=" + ring.flagsAcquire(i) + " slot=" + ring.slot(i) + " off=" + ring.offset(i));
        }
    }
}
