package io.guestmem.mmu;

/**
 * The outcome of {@link FollowPfn#follow}: a pfn (or why there is none) and what comes with it.
 *
 * @param addressSpace  the address space looked in
 * @param slotId        the slot's id, -1 when there was none
 * @param gfn           the guest frame
 * @param hva           its host virtual address; {@link io.guestmem.memslot.MemslotSet#BAD_HVA} /
 *                      {@code RO_BAD_HVA} for NOSLOT / a write to a read-only slot
 * @param pfn           KVM's encoding ({@link KvmPfn}): a real pfn, {@link KvmPfn#HIDDEN},
 *                      {@link KvmPfn#NOT_OBSERVABLE}, or the error's code
 * @param error         null on success
 * @param observability what could be seen of the pfn (null on error)
 * @param writable      the host mapping is writable ({@code *map_writable} / {@code foll->writable})
 * @param page          the page as kpageflags classifies it (null on error)
 * @param reference     the reference the library now holds (refcounted pages only; release it with
 *                      {@link FollowPfn#releaseFaultinPage}); null when nothing is held
 * @param level         the host mapping level when asked for ({@link FollowPfnRequest#wantLevel}), else null
 * @param sequence      the notifier sequence taken before the lookup: check {@link MmuNotifier#retryGfn}
 *                      with it before trusting the result
 * @param path          which branch of the decision table answered
 * @param guestMemfd    for a private guest_memfd page looked up with FOLL_GUEST ({@link Path#GUEST_MEMFD}): the
 *                      file and offset it was resolved through; null otherwise
 */
public record FollowPfnResult(int addressSpace, int slotId, long gfn, long hva, long pfn, PfnError error,
                              PfnObservability observability, boolean writable, RefcountedPage page,
                              PageReference reference, MappingLevel level, long sequence, Path path,
                              GuestMemfdResolution guestMemfd) {

    /** The branch of {@link FollowPfn}'s table that produced the result. */
    public enum Path {
        /** Rejected before looking at the host (no slot, read-only slot, FOLL_GUEST, gfn poison). */
        PRECHECK,
        /** Present in pagemap, answered without faulting. */
        FAST,
        /** Faulted in with MADV_POPULATE_READ/WRITE, then read again. */
        SLOW,
        /** A VM_PFNMAP/VM_IO VMA ({@code hva_to_pfn_remapped}). */
        REMAPPED,
        /** Decided from the VMA after the fault path failed (no VMA, NEEDS_IO, FAULT). */
        VMA,
        /**
         * A private guest_memfd page for FOLL_GUEST, resolved through the guest_memfd's file and offset
         * ({@code kvm_gmem_get_pfn}), never through the hva: nothing is faulted into the host.
         */
        GUEST_MEMFD
    }

    public boolean isError() {
        return error != null;
    }

    public boolean ok() {
        return error == null;
    }

    /** The refcounted page held ({@code *refcounted_page}), or null. */
    public RefcountedPage refcountedPage() {
        return reference == null ? null : reference.page();
    }

    @Override
    public String toString() {
        return "FollowPfnResult[gfn 0x" + Long.toHexString(gfn) + " hva 0x" + Long.toHexString(hva) + " "
                + KvmPfn.describe(pfn) + (ok() ? (writable ? " writable" : " read-only") + " " + observability
                + (page != null ? " " + page.kind() : "") + (reference != null ? " ref" : "") : "")
                + (level != null ? " level " + level : "")
                + (guestMemfd != null ? " guest_memfd " + guestMemfd.fd() + "@0x" + Long.toHexString(guestMemfd.offset())
                + " " + guestMemfd.residentBefore() : "") + " via " + path + " seq " + sequence + "]";
    }
}
