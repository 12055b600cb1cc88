package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;

/**
 * Which guest pages are private (guest_memfd) and the per-page references a conversion waits for, as
 * {@link FollowPfn} asks them per gfn. The guest_memfd gfn view ({@code io.guestmem.gmem.GuestMemfdPages})
 * implements this; {@link #NONE} is memory without guest_memfd.
 *
 * <ul>
 *   <li>{@link #mappability}: who may map the page, for FollowPfn's FOLL_GUEST row ({@link FollGuest#view}).</li>
 *   <li>{@link #tryGet} / {@link #put}: every reference FollowPfn hands out is also taken here, in the view the
 *       lookup asked for ({@code guest} = FOLL_GUEST), and put back when the result is released, so the release
 *       of the last follow_pfn reference is the final put that finishes a deferred conversion. A failed
 *       {@link #tryGet} (the page converted after the mappability check) makes the lookup fail with FAULT, as a
 *       page in no view.</li>
 * </ul>
 * Called on every lookup before the library touches the page: must be quick, allocation-free and thread-safe,
 * and must never block on a lookup in progress ({@link #resolvePrivate} excepted: it makes syscalls).
 */
public interface PrivatePages {

    /** Who may map {@code gfn} of {@code slot}: {@link Mappability#ALL} for every page that is not guest_memfd's. */
    Mappability mappability(Memslot slot, long gfn);

    /** Takes a reference on {@code gfn} of {@code slot} in the {@code guest} view; false (nothing taken) when it is not in that view. */
    boolean tryGet(Memslot slot, long gfn, boolean guest);

    /**
     * Releases a reference taken by {@link #tryGet} through the same slot and {@code guest} (the slot may have
     * been deleted or moved since: the reference still names the page it was taken on).
     */
    void put(Memslot slot, long gfn, boolean guest);

    /**
     * Resolves a private page ({@link Mappability#GUEST}) for a FOLL_GUEST lookup that holds its {@link #tryGet}
     * reference, through its guest_memfd's file and offset, as the kernel does ({@code kvm_gmem_get_pfn}: the
     * folio at the slot's guest_memfd offset, allocated if absent), never through the hva and without making any
     * host page table entry. Null when no file backs the private page: memory private by marking only (a
     * mappability with no guest_memfd behind it), which the FOLL_GUEST RFC keeps in the host's page tables and
     * follow_pfn then looks up through the hva as that RFC's GUP does.
     *
     * @throws io.guestmem.sys.SyscallException when the allocation fails (follow_pfn answers HWPOISON,
     *         SIGPENDING or FAULT by its errno)
     */
    default GuestMemfdResolution resolvePrivate(Memslot slot, long gfn) {
        return null;
    }

    /** No private memory: every page is shared ({@link Mappability#ALL}) and no count is kept. */
    PrivatePages NONE = new PrivatePages() {
        @Override
        public Mappability mappability(Memslot slot, long gfn) {
            return Mappability.ALL;
        }

        @Override
        public boolean tryGet(Memslot slot, long gfn, boolean guest) {
            return FollGuest.view(Mappability.ALL, guest).ok();
        }

        @Override
        public void put(Memslot slot, long gfn, boolean guest) { }

        @Override
        public String toString() {
            return "PrivatePages.NONE";
        }
    };
}
