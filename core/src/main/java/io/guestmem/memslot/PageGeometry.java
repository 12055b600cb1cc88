package io.guestmem.memslot;

import io.guestmem.sys.Posix;

/**
 * The base page size memslots are built on: {@code pageSize = 1 << shift}, and {@code mask} is the kernel's
 * {@code PAGE_MASK} ({@code ~(pageSize - 1)}: it keeps the page-aligned part of an address).
 *
 * <p>Production code uses {@link #host()} (from {@code sysconf(_SC_PAGESIZE)}); the 4K, 16K and 64K
 * geometries of x86-64 and arm64 kernels are constructible so that memslot logic is tested with each of them
 * on any host. Everything in {@code io.guestmem.memslot} and {@code io.guestmem.mmu} that turns addresses into
 * frame numbers takes its shift from here, never from a constant.
 */
public record PageGeometry(long pageSize, int shift, long mask) {

    public static final PageGeometry K4 = of(4096);
    public static final PageGeometry K16 = of(16384);
    public static final PageGeometry K64 = of(65536);

    private static final PageGeometry HOST = of(Posix.PAGE_SIZE);

    public PageGeometry {
        if (pageSize <= 0 || Long.bitCount(pageSize) != 1 || shift != Long.numberOfTrailingZeros(pageSize)
                || mask != ~(pageSize - 1)) {
            throw new IllegalArgumentException("inconsistent page geometry: size " + pageSize + ", shift " + shift
                    + ", mask 0x" + Long.toHexString(mask));
        }
    }

    /** The geometry of a power-of-two page size. */
    public static PageGeometry of(long pageSize) {
        if (pageSize <= 0 || Long.bitCount(pageSize) != 1) {
            throw new IllegalArgumentException("page size must be a power of two: " + pageSize);
        }
        return new PageGeometry(pageSize, Long.numberOfTrailingZeros(pageSize), ~(pageSize - 1));
    }

    /** The running kernel's base page size. */
    public static PageGeometry host() {
        return HOST;
    }

    /** {@code addr & (pageSize - 1)}: the offset inside its page. */
    public long offset(long addr) {
        return addr & ~mask;
    }

    public boolean isAligned(long addr) {
        return (addr & ~mask) == 0;
    }

    /** The frame number of an address ({@code gpa >> PAGE_SHIFT}), unsigned. */
    public long frame(long addr) {
        return addr >>> shift;
    }

    /** The address of a frame ({@code gfn << PAGE_SHIFT}). */
    public long address(long frame) {
        return frame << shift;
    }

    public long alignDown(long addr) {
        return addr & mask;
    }

    public long alignUp(long addr) {
        return (addr + pageSize - 1) & mask;
    }

    @Override
    public String toString() {
        return (pageSize >= 1024 ? (pageSize >> 10) + "K" : pageSize + "B") + " pages";
    }
}
