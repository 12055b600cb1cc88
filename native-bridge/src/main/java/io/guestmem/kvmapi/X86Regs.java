package io.guestmem.kvmapi;

import java.util.Arrays;

/**
 * x86 {@code struct kvm_regs} as a value: the 18 general registers in the kernel's order. Immutable;
 * {@link #with} returns a copy.
 */
public final class X86Regs {
    /** The registers in {@code struct kvm_regs} order. */
    public enum Reg { RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP, R8, R9, R10, R11, R12, R13, R14, R15, RIP, RFLAGS }

    /** RFLAGS bit 1 is reserved and must read as 1. */
    public static final long RFLAGS_RESERVED = 2;

    private final long[] values;

    X86Regs(long[] values) {
        if (values.length != Reg.values().length) throw new IllegalArgumentException("kvm_regs has 18 registers");
        this.values = values.clone();
    }

    /** All registers zero except RFLAGS' reserved bit. */
    public static X86Regs initial() {
        long[] v = new long[Reg.values().length];
        v[Reg.RFLAGS.ordinal()] = RFLAGS_RESERVED;
        return new X86Regs(v);
    }

    public long get(Reg r) {
        return values[r.ordinal()];
    }

    public X86Regs with(Reg r, long value) {
        long[] v = values.clone();
        v[r.ordinal()] = value;
        return new X86Regs(v);
    }

    long[] raw() {
        return values.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof X86Regs x && Arrays.equals(values, x.values);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(values);
    }

    @Override
    public String toString() {
        StringBuilder s = new StringBuilder("X86Regs[");
        for (Reg r : Reg.values()) s.append(r.name().toLowerCase()).append("=0x").append(Long.toHexString(get(r))).append(' ');
        return s.append(']').toString();
    }
}
