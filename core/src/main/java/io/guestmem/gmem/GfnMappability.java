package io.guestmem.gmem;

/**
 * The mappability of a guest frame, for follow_pfn (FOLL_GUEST rules) and the guest-memory accessors (may the
 * host touch this gfn). Implementations answer without allocating or calling the kernel.
 */
@FunctionalInterface
public interface GfnMappability {
    /** {@link Mappability#ALL} for every gfn not backed by a guest_memfd the implementation knows. */
    Mappability mappability(int addressSpace, long gfn);

    /** The access policy: the host may read or write the gfn through its mapping. */
    default boolean hostMayAccess(int addressSpace, long gfn) {
        return mappability(addressSpace, gfn) == Mappability.ALL;
    }
}
