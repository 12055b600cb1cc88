package io.guestmem.kvmapi;

/**
 * The kernel's ioctl request encoding ({@code include/uapi/asm-generic/ioctl.h}): 8 bits number, 8 bits type,
 * 14 bits argument size, 2 bits direction. x86-64 and arm64 both use the generic encoding, so one
 * definition serves both; architectures with their own encoding (powerpc, mips, sparc) are not supported.
 */
public final class Ioc {
    private Ioc() {}

    private static final int NRSHIFT = 0, TYPESHIFT = 8, SIZESHIFT = 16, DIRSHIFT = 30;
    private static final int NONE = 0, WRITE = 1, READ = 2;
    private static final long MAX_SIZE = (1 << 14) - 1;

    static long ioc(int dir, int type, int nr, long size) {
        if (size < 0 || size > MAX_SIZE) throw new IllegalArgumentException("ioctl argument size " + size + " > 14 bits");
        return ((long) dir << DIRSHIFT) | (size << SIZESHIFT) | ((long) type << TYPESHIFT) | ((long) nr << NRSHIFT);
    }

    /** {@code _IO(type, nr)}: no argument struct. */
    public static long io(int type, int nr) {
        return ioc(NONE, type, nr, 0);
    }

    /** {@code _IOR(type, nr, T)}: the kernel writes a {@code size}-byte struct. */
    public static long ior(int type, int nr, long size) {
        return ioc(READ, type, nr, size);
    }

    /** {@code _IOW(type, nr, T)}: the kernel reads a {@code size}-byte struct. */
    public static long iow(int type, int nr, long size) {
        return ioc(WRITE, type, nr, size);
    }

    /** {@code _IOWR(type, nr, T)}: both directions. */
    public static long iowr(int type, int nr, long size) {
        return ioc(READ | WRITE, type, nr, size);
    }
}
