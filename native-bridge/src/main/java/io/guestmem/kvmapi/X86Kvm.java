package io.guestmem.kvmapi;

import io.guestmem.sys.ErrnoException;
import io.guestmem.sys.Ioc;
import io.guestmem.sys.Posix;

import static io.guestmem.kvmapi.KvmLayouts.offset;
import static java.lang.foreign.MemoryLayout.sequenceLayout;
import static java.lang.foreign.MemoryLayout.structLayout;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import io.guestmem.sys.Arch;
import io.guestmem.sys.Fmt;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;

/**
 * The x86-only part of the KVM API ({@code arch/x86/include/uapi/asm/kvm.h}): the REGS/SREGS ioctls and
 * structs, and KVM_SET_TSS_ADDR. Nothing architecture-neutral may depend on this class.
 */
public final class X86Kvm {
    private X86Kvm() {}

    /** {@code struct kvm_regs} (144 B). */
    public static final StructLayout REGS = structLayout(sequenceLayout(18, JAVA_LONG).withName("regs")).withName("kvm_regs");

    /** {@code struct kvm_segment} (24 B). */
    public static final StructLayout SEGMENT = structLayout(
            JAVA_LONG.withName("base"),
            JAVA_INT.withName("limit"),
            JAVA_SHORT.withName("selector"),
            JAVA_BYTE.withName("type"),
            JAVA_BYTE.withName("present"),
            JAVA_BYTE.withName("dpl"),
            JAVA_BYTE.withName("db"),
            JAVA_BYTE.withName("s"),
            JAVA_BYTE.withName("l"),
            JAVA_BYTE.withName("g"),
            JAVA_BYTE.withName("avl"),
            JAVA_BYTE.withName("unusable"),
            JAVA_BYTE.withName("padding")).withName("kvm_segment");

    /** {@code struct kvm_dtable} (16 B). */
    public static final StructLayout DTABLE = structLayout(
            JAVA_LONG.withName("base"),
            JAVA_SHORT.withName("limit"),
            sequenceLayout(3, JAVA_SHORT).withName("padding")).withName("kvm_dtable");

    /** {@code struct kvm_sregs} (312 B). */
    public static final StructLayout SREGS = structLayout(
            SEGMENT.withName("cs"), SEGMENT.withName("ds"), SEGMENT.withName("es"), SEGMENT.withName("fs"),
            SEGMENT.withName("gs"), SEGMENT.withName("ss"), SEGMENT.withName("tr"), SEGMENT.withName("ldt"),
            DTABLE.withName("gdt"), DTABLE.withName("idt"),
            JAVA_LONG.withName("cr0"), JAVA_LONG.withName("cr2"), JAVA_LONG.withName("cr3"),
            JAVA_LONG.withName("cr4"), JAVA_LONG.withName("cr8"), JAVA_LONG.withName("efer"),
            JAVA_LONG.withName("apic_base"),
            sequenceLayout(4, JAVA_LONG).withName("interrupt_bitmap")).withName("kvm_sregs");

    public static final long KVM_GET_REGS = Ioc.ior(KvmIoctls.KVMIO, 0x81, REGS.byteSize());
    public static final long KVM_SET_REGS = Ioc.iow(KvmIoctls.KVMIO, 0x82, REGS.byteSize());
    public static final long KVM_GET_SREGS = Ioc.ior(KvmIoctls.KVMIO, 0x83, SREGS.byteSize());
    public static final long KVM_SET_SREGS = Ioc.iow(KvmIoctls.KVMIO, 0x84, SREGS.byteSize());
    public static final long KVM_SET_TSS_ADDR = Ioc.io(KvmIoctls.KVMIO, 0x47);

    private static final String[] SEGMENTS = {"cs", "ds", "es", "fs", "gs", "ss", "tr", "ldt"};

    private static void requireX86() {
        if (!Arch.CURRENT.isX86()) throw new UnsupportedOperationException("x86 KVM ioctl on " + Arch.CURRENT.name());
    }

    /**
     * KVM_SET_TSS_ADDR: three pages of guest-physical space Intel's real-mode emulation may use (the
     * conventional value is 0xfffbd000, just below the BIOS); harmless elsewhere.
     */
    public static void setTssAddr(VmFd vm, long gpa) {
        requireX86();
        vm.ioctlInt(KVM_SET_TSS_ADDR, gpa, "KVM_SET_TSS_ADDR, " + Fmt.hex(gpa));
    }

    public static X86Regs getRegs(VcpuFd vcpu) {
        requireX86();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment r = a.allocate(REGS);
            vcpu.ioctlPtr(KVM_GET_REGS, r, "KVM_GET_REGS");
            return new X86Regs(r.toArray(ValueLayout.JAVA_LONG));
        }
    }

    public static void setRegs(VcpuFd vcpu, X86Regs regs) {
        requireX86();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment r = a.allocate(REGS);
            MemorySegment.copy(regs.raw(), 0, r, ValueLayout.JAVA_LONG, 0, 18);
            vcpu.ioctlPtr(KVM_SET_REGS, r, "KVM_SET_REGS, rip=" + Fmt.hex(regs.get(X86Regs.Reg.RIP)));
        }
    }

    public static X86Sregs getSregs(VcpuFd vcpu) {
        requireX86();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(SREGS);
            vcpu.ioctlPtr(KVM_GET_SREGS, s, "KVM_GET_SREGS");
            X86Segment[] seg = new X86Segment[SEGMENTS.length];
            for (int i = 0; i < seg.length; i++) seg[i] = readSegment(s, offset(SREGS, SEGMENTS[i]));
            return new X86Sregs(seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7],
                    s.get(JAVA_LONG, offset(SREGS, "gdt", "base")),
                    Short.toUnsignedInt(s.get(JAVA_SHORT, offset(SREGS, "gdt", "limit"))),
                    s.get(JAVA_LONG, offset(SREGS, "idt", "base")),
                    Short.toUnsignedInt(s.get(JAVA_SHORT, offset(SREGS, "idt", "limit"))),
                    s.get(JAVA_LONG, offset(SREGS, "cr0")), s.get(JAVA_LONG, offset(SREGS, "cr2")),
                    s.get(JAVA_LONG, offset(SREGS, "cr3")), s.get(JAVA_LONG, offset(SREGS, "cr4")),
                    s.get(JAVA_LONG, offset(SREGS, "cr8")), s.get(JAVA_LONG, offset(SREGS, "efer")),
                    s.get(JAVA_LONG, offset(SREGS, "apic_base")),
                    s.asSlice(offset(SREGS, "interrupt_bitmap"), 32).toArray(JAVA_LONG));
        }
    }

    public static void setSregs(VcpuFd vcpu, X86Sregs sregs) {
        requireX86();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(SREGS);
            X86Segment[] seg = {sregs.cs(), sregs.ds(), sregs.es(), sregs.fs(), sregs.gs(), sregs.ss(), sregs.tr(), sregs.ldt()};
            for (int i = 0; i < seg.length; i++) writeSegment(s, offset(SREGS, SEGMENTS[i]), seg[i]);
            s.set(JAVA_LONG, offset(SREGS, "gdt", "base"), sregs.gdtBase());
            s.set(JAVA_SHORT, offset(SREGS, "gdt", "limit"), (short) sregs.gdtLimit());
            s.set(JAVA_LONG, offset(SREGS, "idt", "base"), sregs.idtBase());
            s.set(JAVA_SHORT, offset(SREGS, "idt", "limit"), (short) sregs.idtLimit());
            s.set(JAVA_LONG, offset(SREGS, "cr0"), sregs.cr0());
            s.set(JAVA_LONG, offset(SREGS, "cr2"), sregs.cr2());
            s.set(JAVA_LONG, offset(SREGS, "cr3"), sregs.cr3());
            s.set(JAVA_LONG, offset(SREGS, "cr4"), sregs.cr4());
            s.set(JAVA_LONG, offset(SREGS, "cr8"), sregs.cr8());
            s.set(JAVA_LONG, offset(SREGS, "efer"), sregs.efer());
            s.set(JAVA_LONG, offset(SREGS, "apic_base"), sregs.apicBase());
            MemorySegment.copy(sregs.interruptBitmap(), 0, s, JAVA_LONG, offset(SREGS, "interrupt_bitmap"), 4);
            vcpu.ioctlPtr(KVM_SET_SREGS, s, "KVM_SET_SREGS, cr0=" + Fmt.hex(sregs.cr0()) + " cs.base="
                    + Fmt.hex(sregs.cs().base()));
        }
    }

    private static X86Segment readSegment(MemorySegment s, long at) {
        return new X86Segment(
                s.get(JAVA_LONG, at + offset(SEGMENT, "base")),
                s.get(JAVA_INT, at + offset(SEGMENT, "limit")),
                Short.toUnsignedInt(s.get(JAVA_SHORT, at + offset(SEGMENT, "selector"))),
                Byte.toUnsignedInt(s.get(JAVA_BYTE, at + offset(SEGMENT, "type"))),
                flag(s, at, "present"), Byte.toUnsignedInt(s.get(JAVA_BYTE, at + offset(SEGMENT, "dpl"))),
                flag(s, at, "db"), flag(s, at, "s"), flag(s, at, "l"), flag(s, at, "g"), flag(s, at, "avl"),
                flag(s, at, "unusable"));
    }

    private static boolean flag(MemorySegment s, long at, String name) {
        return s.get(JAVA_BYTE, at + offset(SEGMENT, name)) != 0;
    }

    private static void writeSegment(MemorySegment s, long at, X86Segment g) {
        s.set(JAVA_LONG, at + offset(SEGMENT, "base"), g.base());
        s.set(JAVA_INT, at + offset(SEGMENT, "limit"), g.limit());
        s.set(JAVA_SHORT, at + offset(SEGMENT, "selector"), (short) g.selector());
        s.set(JAVA_BYTE, at + offset(SEGMENT, "type"), (byte) g.type());
        s.set(JAVA_BYTE, at + offset(SEGMENT, "present"), b(g.present()));
        s.set(JAVA_BYTE, at + offset(SEGMENT, "dpl"), (byte) g.dpl());
        s.set(JAVA_BYTE, at + offset(SEGMENT, "db"), b(g.db()));
        s.set(JAVA_BYTE, at + offset(SEGMENT, "s"), b(g.s()));
        s.set(JAVA_BYTE, at + offset(SEGMENT, "l"), b(g.l()));
        s.set(JAVA_BYTE, at + offset(SEGMENT, "g"), b(g.g()));
        s.set(JAVA_BYTE, at + offset(SEGMENT, "avl"), b(g.avl()));
        s.set(JAVA_BYTE, at + offset(SEGMENT, "unusable"), b(g.unusable()));
    }

    private static byte b(boolean v) {
        return (byte) (v ? 1 : 0);
    }

    /**
     * The guest-physical bound KVM's x86 {@code kvm_arch_prepare_memory_region} puts on a created or moved
     * slot: its last gfn must not pass {@code kvm_mmu_max_gfn()}, else EINVAL, so a slot may end at
     * {@code 1 << bits}. The kernel takes the bits from {@code tdp_enabled ? shadow_phys_bits : 52}, where
     * {@code shadow_phys_bits} is the raw CPUID 0x80000008 width: userspace can read neither (cpuinfo's
     * "address sizes" is the width after memory-encryption keys took their bits, and a 48-bit cpuinfo host
     * was seen accepting slots past 2^48). So the bound is measured: in a scratch VM, the highest {@code bits}
     * in [32, 52] for which KVM accepts a one-page slot ending at {@code 1 << bits}. Measured once per
     * process; 0 when no VM can be created.
     */
    public static int guestPhysBits(KvmDevice kvm) {
        int bits = guestPhysBits;
        if (bits < 0) {
            synchronized (X86Kvm.class) {
                if ((bits = guestPhysBits) < 0) guestPhysBits = bits = measureGuestPhysBits(kvm);
            }
        }
        return bits;
    }

    private static volatile int guestPhysBits = -1;

    private static int measureGuestPhysBits(KvmDevice kvm) {
        long page = Posix.PAGE_SIZE;
        try (VmFd scratch = kvm.createVm(0)) {
            for (int bits = 52; bits >= 32; bits--) {
                try {
                    // KVM only checks the hva's alignment and access_ok here; nothing is mapped or touched.
                    scratch.setUserMemoryRegion(0, 0, (1L << bits) - page, page, page);
                } catch (ErrnoException e) {
                    continue;
                }
                scratch.setUserMemoryRegion(0, 0, 0, 0, 0);
                return bits;
            }
            return 0;
        } catch (ErrnoException e) {
            return 0;
        }
    }
}
