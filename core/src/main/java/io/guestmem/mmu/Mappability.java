package io.guestmem.mmu;

/**
 * Who may map a guest_memfd page, as in the guest_memfd mappability series: the per-page value of
 * {@code mappable_offsets}. The one vocabulary for it: follow_pfn's FOLL_GUEST rule ({@link FollGuest}), the
 * guest_memfd state machine and the accessors' policy all speak it.
 *
 * <ul>
 *   <li>{@link #ALL}: shared. The host (its mappings, follow_pfn without FOLL_GUEST, the library's accessors)
 *       and the guest's shared view may use it.</li>
 *   <li>{@link #GUEST}: private. Only a guest-side lookup (follow_pfn with FOLL_GUEST) may use it; every host
 *       access is refused and the host mapping of the page is zapped.</li>
 *   <li>{@link #NONE}: transient, between the two while the library still holds references taken in the old
 *       view. Nobody may take a new reference; the last release finishes the conversion (the series'
 *       final {@code folio_put} callback, see {@code GuestMemfdRegion}).</li>
 * </ul>
 */
public enum Mappability {
    ALL, GUEST, NONE;

    /** The host may map and touch the page. */
    public boolean hostMayAccess() {
        return this == ALL;
    }

    /** A FOLL_GUEST (private) lookup may return the page. */
    public boolean guestPrivateAccess() {
        return this == GUEST;
    }

    private static final Mappability[] VALUES = values();

    /** The value with this ordinal (the guest_memfd state word packs it). */
    public static Mappability of(int ordinal) {
        return VALUES[ordinal];
    }
}
