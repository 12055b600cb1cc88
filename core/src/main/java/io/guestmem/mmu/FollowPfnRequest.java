package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;

/**
 * The inputs of {@link FollowPfn#follow}: KVM 6.13's {@code struct kvm_follow_pfn} plus the options of the v9
 * patch "KVM: mmu: Improve handling of non-refcounted pfns" (cited in {@link FollowPfn}). Immutable, so one
 * request can be reused for many calls; the {@code with*} methods derive variants.
 *
 * @param addressSpace  the address space to look {@code gfn} up in (when {@code slot} is null)
 * @param slot          the slot to use ({@code kfp->slot}); null: look {@code gfn} up in the current set. A slot
 *                      that is no longer in the current set (deleted, moved) answers NOSLOT, like an INVALID slot
 * @param gfn           the guest frame
 * @param write         FOLL_WRITE: a write fault
 * @param noWait        FOLL_NOWAIT: never fault a non-present page in; answer NEEDS_IO instead
 * @param mapWritable   {@code kfp->map_writable != NULL}: on a read fault, map writable if the host already is
 * @param pin           FOLL_PIN ({@code kvm_vcpu_map}); refused on PFNMAP memory unless allowUnsafeMappings
 * @param guardedByMmuNotifier v9: the caller checks the notifier's retry (required for non-refcounted pfns)
 * @param allowNonRefcountedStructPage v9: accept struct pages that cannot be refcounted
 * @param guest         FOLL_GUEST ({@link FollGuest}): the lookup is for the private (guest-only) view
 * @param wantLevel     also report the host mapping level (costs a PAGEMAP_SCAN)
 */
public record FollowPfnRequest(int addressSpace, Memslot slot, long gfn, boolean write, boolean noWait,
                               boolean mapWritable, boolean pin, boolean guardedByMmuNotifier,
                               boolean allowNonRefcountedStructPage, boolean guest, boolean wantLevel) {

    /** A read fault on {@code gfn} of address space 0, guarded by the notifier (how KVM's faults run). */
    public static FollowPfnRequest read(long gfn) {
        return new FollowPfnRequest(0, null, gfn, false, false, false, false, true, false, false, false);
    }

    /** A write fault on {@code gfn} of address space 0, guarded by the notifier. */
    public static FollowPfnRequest write(long gfn) {
        return read(gfn).withWrite(true);
    }

    public FollowPfnRequest withGfn(long g) {
        return new FollowPfnRequest(addressSpace, slot, g, write, noWait, mapWritable, pin, guardedByMmuNotifier,
                allowNonRefcountedStructPage, guest, wantLevel);
    }

    public FollowPfnRequest withAddressSpace(int as) {
        return new FollowPfnRequest(as, slot, gfn, write, noWait, mapWritable, pin, guardedByMmuNotifier,
                allowNonRefcountedStructPage, guest, wantLevel);
    }

    public FollowPfnRequest withSlot(Memslot s) {
        return new FollowPfnRequest(s == null ? addressSpace : s.addressSpace(), s, gfn, write, noWait, mapWritable,
                pin, guardedByMmuNotifier, allowNonRefcountedStructPage, guest, wantLevel);
    }

    public FollowPfnRequest withWrite(boolean v) {
        return new FollowPfnRequest(addressSpace, slot, gfn, v, noWait, mapWritable, pin, guardedByMmuNotifier,
                allowNonRefcountedStructPage, guest, wantLevel);
    }

    public FollowPfnRequest withNoWait(boolean v) {
        return new FollowPfnRequest(addressSpace, slot, gfn, write, v, mapWritable, pin, guardedByMmuNotifier,
                allowNonRefcountedStructPage, guest, wantLevel);
    }

    public FollowPfnRequest withMapWritable(boolean v) {
        return new FollowPfnRequest(addressSpace, slot, gfn, write, noWait, v, pin, guardedByMmuNotifier,
                allowNonRefcountedStructPage, guest, wantLevel);
    }

    public FollowPfnRequest withPin(boolean v) {
        return new FollowPfnRequest(addressSpace, slot, gfn, write, noWait, mapWritable, v, guardedByMmuNotifier,
                allowNonRefcountedStructPage, guest, wantLevel);
    }

    public FollowPfnRequest withGuarded(boolean v) {
        return new FollowPfnRequest(addressSpace, slot, gfn, write, noWait, mapWritable, pin, v,
                allowNonRefcountedStructPage, guest, wantLevel);
    }

    public FollowPfnRequest withAllowNonRefcountedStructPage(boolean v) {
        return new FollowPfnRequest(addressSpace, slot, gfn, write, noWait, mapWritable, pin, guardedByMmuNotifier,
                v, guest, wantLevel);
    }

    public FollowPfnRequest withGuest(boolean v) {
        return new FollowPfnRequest(addressSpace, slot, gfn, write, noWait, mapWritable, pin, guardedByMmuNotifier,
                allowNonRefcountedStructPage, v, wantLevel);
    }

    public FollowPfnRequest withLevel(boolean v) {
        return new FollowPfnRequest(addressSpace, slot, gfn, write, noWait, mapWritable, pin, guardedByMmuNotifier,
                allowNonRefcountedStructPage, guest, v);
    }
}
