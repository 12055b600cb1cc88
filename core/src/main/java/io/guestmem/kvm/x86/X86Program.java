package io.guestmem.kvm.x86;

/**
 * A hand-assembled x86 guest: its machine code, the guest-physical address it must be loaded at and run
 * from, and the CPU mode it was assembled for.
 */
public record X86Program(String name, X86Mode mode, long loadGpa, byte[] code) {
    public X86Program {
        code = code.clone();
    }

    @Override
    public byte[] code() {
        return code.clone();
    }

    public long entryGpa() {
        return loadGpa;
    }
}
