package io.guestmem.sys;

/**
 * The kernel's {@code _IOC} encoding of ioctl request numbers ({@code include/uapi/asm-generic/ioctl.h}):
 * {@code dir << 30 | size << 16 | type << 8 | nr}. x86-64 and arm64 both use this generic layout, so the
 * numbers are computed here, once, from the struct sizes the bindings declare, instead of being copied
 * as magic hex.
 */
public final class Ioc {
    private Ioc() {}

    private static final int NONE = 0, WRITE = 1, READ = 2;

    private static long ioc(int dir, int type, int nr, long size) {
        if (size < 0 || size >= (1 << 14)) throw new IllegalArgumentException("ioctl size " + size + " does not fit 14 bits");
        return ((long) dir << 30) | (size << 16) | ((long) (type & 0xff) << 8) | (nr & 0xff);
    }

    /** {@code _IO(type, nr)}. */
    public static long io(int type, int nr) {
        return ioc(NONE, type, nr, 0);
    }

    /** {@code _IOR(type, nr, size)}: the kernel writes the struct. */
    public static long ior(int type, int nr, long size) {
        return ioc(READ, type, nr, size);
    }

    /** {@code _IOW(type, nr, size)}: the kernel reads the struct. */
    public static long iow(int type, int nr, long size) {
        return ioc(WRITE, type, nr, size);
    }

    /** {@code _IOWR(type, nr, size)}: both directions. */
    public static long iowr(int type, int nr, long size) {
        return ioc(READ | WRITE, type, nr, size);
    }
}
