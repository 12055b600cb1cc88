package io.guestmem.mmu;

/**
 * Who may map a guest_memfd page, as in the guest_memfd mappability series (Fuad Tabba, "KVM: Restricted
 * mapping of guest_memfd at the host and arm64 support", 2025,
 * <a href="https://lore.kernel.org/all/?q=s%3A%22Restricted+mapping+of+guest_memfd+at+the+host%22">lore</a>):
 * the per-page value of {@code mappable_offsets}. The one vocabulary for it: follow_pfn's FOLL_GUEST rule
 * ({@link FollGuest}, the one place that says who may use a page of each value), the guest_memfd page states
 * and the accessors' policy all speak it.
 *
 * <ul>
 *   <li>{@link #ALL}: shared. The host (its mappings, follow_pfn without FOLL_GUEST, the library's accessors)
 *       and the guest's shared view may use it.</li>
 *   <li>{@link #GUEST}: private. Only a guest-side lookup (follow_pfn with FOLL_GUEST) may use it; every host
 *       access is refused and the host mapping of the page is zapped.</li>
 *   <li>{@link #NONE}: transient, between the two while the library still holds references taken in the old
 *       view. Nobody may take a new reference; the last release finishes the conversion (the series' final
 *       {@code folio_put} callback).</li>
 * </ul>
 */
public enum Mappability {
    ALL, GUEST, NONE;

    private static final Mappability[] VALUES = values();

    /** The value with this ordinal (the guest_memfd state word packs it). */
    public static Mappability of(int ordinal) {
        return VALUES[ordinal];
    }
}
