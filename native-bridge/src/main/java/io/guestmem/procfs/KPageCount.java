package io.guestmem.procfs;

/**
 * {@code /proc/kpagecount}: how many times each physical page is mapped (needs CAP_SYS_ADMIN). For pages of
 * a large folio on kernels without precise per-page mapcounts the kernel reports the folio's average
 * (at least 1 when any page of it is mapped); the huge zero page reports 0.
 */
public final class KPageCount extends PfnTable {
    public static final String PATH = "/proc/kpagecount";

    private KPageCount() {
        super(PATH);
    }

    public static KPageCount open() {
        return new KPageCount();
    }
}
