package io.guestmem.kvmapi;

/**
 * x86 {@code struct kvm_sregs}: segment registers, descriptor tables and control registers. Read it with
 * {@link X86Kvm#getSregs}, change what the guest needs with the {@code with*} methods, write it back.
 * The interrupt bitmap is carried through unchanged.
 */
public record X86Sregs(X86Segment cs, X86Segment ds, X86Segment es, X86Segment fs, X86Segment gs, X86Segment ss,
                       X86Segment tr, X86Segment ldt, long gdtBase, int gdtLimit, long idtBase, int idtLimit,
                       long cr0, long cr2, long cr3, long cr4, long cr8, long efer, long apicBase,
                       long[] interruptBitmap) {

    public static final long CR0_PE = 1, CR0_ET = 1 << 4;

    public X86Sregs {
        interruptBitmap = interruptBitmap.clone();
    }

    @Override
    public long[] interruptBitmap() {
        return interruptBitmap.clone();
    }

    /** The same state with CS and all data segments replaced. */
    public X86Sregs withSegments(X86Segment code, X86Segment data) {
        return new X86Sregs(code, data, data, data, data, data, tr, ldt, gdtBase, gdtLimit, idtBase, idtLimit,
                cr0, cr2, cr3, cr4, cr8, efer, apicBase, interruptBitmap);
    }

    public X86Sregs withGdt(long base, int limit) {
        return new X86Sregs(cs, ds, es, fs, gs, ss, tr, ldt, base, limit, idtBase, idtLimit,
                cr0, cr2, cr3, cr4, cr8, efer, apicBase, interruptBitmap);
    }

    public X86Sregs withCr0(long value) {
        return new X86Sregs(cs, ds, es, fs, gs, ss, tr, ldt, gdtBase, gdtLimit, idtBase, idtLimit,
                value, cr2, cr3, cr4, cr8, efer, apicBase, interruptBitmap);
    }
}
