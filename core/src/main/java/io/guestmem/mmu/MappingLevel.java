package io.guestmem.mmu;

/**
 * A mapping level: a base page, a PMD block or a PUD block (x86's PG_LEVEL_4K/2M/1G; on arm64 with 16K pages
 * the PMD block is 32M, with 64K pages 512M). Sizes come from {@link LevelSizes}, never from this enum.
 */
public enum MappingLevel {
    PAGE(1), PMD(2), PUD(3);

    /** KVM's level number (PG_LEVEL_4K = 1). */
    public final int number;

    MappingLevel(int number) {
        this.number = number;
    }

    public MappingLevel min(MappingLevel o) {
        return number <= o.number ? this : o;
    }

    public MappingLevel lower() {
        return this == PUD ? PMD : PAGE;
    }
}
