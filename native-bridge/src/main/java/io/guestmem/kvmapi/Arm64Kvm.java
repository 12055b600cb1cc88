package io.guestmem.kvmapi;

import static java.lang.foreign.MemoryLayout.sequenceLayout;
import static java.lang.foreign.MemoryLayout.structLayout;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import io.guestmem.sys.Arch;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Ioc;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;

/**
 * The arm64-only part of the KVM API ({@code arch/arm64/include/uapi/asm/kvm.h}): KVM_ARM_PREFERRED_TARGET,
 * KVM_ARM_VCPU_INIT and the ONE_REG accessors with the core-register ids. arm64 has no REGS/SREGS ioctls;
 * every register goes through KVM_SET_ONE_REG. Nothing architecture-neutral may depend on this class.
 */
public final class Arm64Kvm {
    private Arm64Kvm() {}

    /** {@code struct kvm_vcpu_init} (32 B): {@code __u32 target; __u32 features[7]}. */
    public static final StructLayout VCPU_INIT = structLayout(
            JAVA_INT.withName("target"),
            sequenceLayout(7, JAVA_INT).withName("features")).withName("kvm_vcpu_init");

    /** {@code struct kvm_one_reg} (16 B): {@code __u64 id; __u64 addr} (addr = user pointer to the value). */
    public static final StructLayout ONE_REG = structLayout(
            JAVA_LONG.withName("id"),
            JAVA_LONG.withName("addr")).withName("kvm_one_reg");

    // include/uapi/linux/kvm.h
    public static final long KVM_SET_ONE_REG = Ioc.iow(KvmIoctls.KVMIO, 0xac, ONE_REG.byteSize());
    /** _IOW as well: the kernel reads the struct and writes through its {@code addr}. */
    public static final long KVM_GET_ONE_REG = Ioc.iow(KvmIoctls.KVMIO, 0xab, ONE_REG.byteSize());
    public static final long KVM_ARM_VCPU_INIT = Ioc.iow(KvmIoctls.KVMIO, 0xae, VCPU_INIT.byteSize());
    public static final long KVM_ARM_PREFERRED_TARGET = Ioc.ior(KvmIoctls.KVMIO, 0xaf, VCPU_INIT.byteSize());

    /** {@code KVM_ARM_VCPU_PSCI_0_2}: feature bit 2 of features[0]; the vCPU gets PSCI 0.2 calls (SYSTEM_OFF...). */
    public static final int FEATURE_PSCI_0_2 = 2;

    /** {@code KVM_REG_ARM64}, {@code KVM_REG_SIZE_U64} and {@code KVM_REG_ARM_CORE} (0x0010 in the coproc field, bits 16+). */
    public static final long KVM_REG_ARM64 = 0x6000000000000000L, KVM_REG_SIZE_U64 = 0x0030000000000000L,
            KVM_REG_ARM_CORE = 0x0010L << 16;

    /** {@code struct user_pt_regs} at the start of {@code struct kvm_regs}: regs[31], sp, pc, pstate (272 B). */
    public static final StructLayout USER_PT_REGS = structLayout(
            sequenceLayout(31, JAVA_LONG).withName("regs"),
            JAVA_LONG.withName("sp"),
            JAVA_LONG.withName("pc"),
            JAVA_LONG.withName("pstate")).withName("user_pt_regs");

    /**
     * {@code KVM_REG_ARM_CORE_REG(name)}: the id of a 64-bit core register is its byte offset in
     * {@code struct kvm_regs} divided by 4 (the index in u32 units), ORed with arch, size and the core group.
     */
    public static long coreRegId(long byteOffsetInKvmRegs) {
        if (byteOffsetInKvmRegs % 8 != 0) throw new IllegalArgumentException("core u64 registers are 8-byte aligned");
        return KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | (byteOffsetInKvmRegs / 4);
    }

    /** The id of x{@code n} (0..30). */
    public static long x(int n) {
        if (n < 0 || n > 30) throw new IllegalArgumentException("x" + n);
        return coreRegId(KvmLayouts.offset(USER_PT_REGS, "regs") + 8L * n);
    }

    public static final long REG_SP = coreRegId(KvmLayouts.offset(USER_PT_REGS, "sp"));
    public static final long REG_PC = coreRegId(KvmLayouts.offset(USER_PT_REGS, "pc"));
    public static final long REG_PSTATE = coreRegId(KvmLayouts.offset(USER_PT_REGS, "pstate"));

    /** PSTATE bits ({@code arch/arm64/include/uapi/asm/ptrace.h}): EL1 with SP_EL1, and the D, A, I, F masks. */
    public static final long PSR_MODE_EL1H = 0x5, PSR_F_BIT = 0x40, PSR_I_BIT = 0x80, PSR_A_BIT = 0x100,
            PSR_D_BIT = 0x200;

    /** A kvm_vcpu_init value: the target CPU and the feature bitmap (7 words). */
    public record VcpuInit(int target, int[] features) {
        public VcpuInit {
            if (features.length != 7) throw new IllegalArgumentException("kvm_vcpu_init has 7 feature words");
            features = features.clone();
        }

        @Override
        public int[] features() {
            return features.clone();
        }

        /** The same target with feature bit {@code bit} set. */
        public VcpuInit withFeature(int bit) {
            int[] f = features.clone();
            f[bit / 32] |= 1 << (bit % 32);
            return new VcpuInit(target, f);
        }
    }

    private static void requireArm64() {
        if (Arch.CURRENT.isX86()) throw new UnsupportedOperationException("arm64 KVM ioctl on " + Arch.CURRENT.name());
    }

    /** KVM_ARM_PREFERRED_TARGET (VM ioctl): the target the host CPU is best emulated as, features zero. */
    public static VcpuInit preferredTarget(VmFd vm) {
        requireArm64();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(VCPU_INIT);
            vm.ioctlPtr(KVM_ARM_PREFERRED_TARGET, s, "KVM_ARM_PREFERRED_TARGET");
            return new VcpuInit(s.get(JAVA_INT, 0), s.asSlice(4, 28).toArray(JAVA_INT));
        }
    }

    /** KVM_ARM_VCPU_INIT: resets the vCPU to the target's reset state (EL1, MMU off) with the given features. */
    public static void vcpuInit(VcpuFd vcpu, VcpuInit init) {
        requireArm64();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(VCPU_INIT);
            s.set(JAVA_INT, 0, init.target());
            MemorySegment.copy(init.features(), 0, s, JAVA_INT, 4, 7);
            vcpu.ioctlPtr(KVM_ARM_VCPU_INIT, s, "KVM_ARM_VCPU_INIT, target " + init.target());
        }
    }

    /** KVM_SET_ONE_REG with a 64-bit value. */
    public static void setOneReg(VcpuFd vcpu, long id, long value) {
        requireArm64();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_LONG);
            v.set(JAVA_LONG, 0, value);
            MemorySegment r = a.allocate(ONE_REG);
            r.set(JAVA_LONG, 0, id);
            r.set(JAVA_LONG, 8, v.address());
            vcpu.ioctlPtr(KVM_SET_ONE_REG, r, "KVM_SET_ONE_REG, id " + Fmt.hex(id) + " = " + Fmt.hex(value));
        }
    }

    /** KVM_GET_ONE_REG of a 64-bit register. */
    public static long getOneReg(VcpuFd vcpu, long id) {
        requireArm64();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_LONG);
            MemorySegment r = a.allocate(ONE_REG);
            r.set(JAVA_LONG, 0, id);
            r.set(JAVA_LONG, 8, v.address());
            vcpu.ioctlPtr(KVM_GET_ONE_REG, r, "KVM_GET_ONE_REG, id " + Fmt.hex(id));
            return v.get(JAVA_LONG, 0);
        }
    }

    /** {@code KVM_PHYS_SHIFT_DEFAULT}: the IPA bits of a VM created with no IPA size in its type. */
    public static final int DEFAULT_IPA_BITS = 40;

    /**
     * The IPA bits of a VM of {@code vmType}: {@code KVM_VM_TYPE_ARM_IPA_SIZE(bits)} puts them in the low byte,
     * 0 means {@link #DEFAULT_IPA_BITS}. arm64's {@code kvm_arch_prepare_memory_region} refuses a created,
     * moved or flag-changed slot whose end passes {@code kvm_phys_size()} with EFAULT.
     */
    public static int ipaBits(long vmType) {
        int bits = (int) (vmType & 0xff);
        return bits == 0 ? DEFAULT_IPA_BITS : bits;
    }
}
