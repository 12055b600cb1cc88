package io.guestmem.kvmapi;

/**
 * x86 {@code struct kvm_segment}: a segment register's selector and its hidden (cached descriptor) part,
 * which KVM loads directly, so a guest can start in any mode without executing a segment load.
 */
public record X86Segment(long base, int limit, int selector, int type, boolean present, int dpl, boolean db,
                         boolean s, boolean l, boolean g, boolean avl, boolean unusable) {

    /** A real-mode segment: base = selector * 16, 64 KiB limit, data/code type as after reset. */
    public static X86Segment realMode(int selector, boolean code) {
        return new X86Segment((long) selector << 4, 0xffff, selector, code ? 0xb : 0x3, true, 0, false, true,
                false, false, false, false);
    }

    /** A flat 4 GiB 32-bit segment (base 0, 4K-granular limit 0xfffff): code execute/read or data read/write. */
    public static X86Segment flat32(int selector, boolean code) {
        return new X86Segment(0, 0xffffffff, selector, code ? 0xb : 0x3, true, 0, true, true, false, true,
                false, false);
    }
}
