package io.guestmem.mmu;

import java.util.Objects;

/**
 * Everything outside the page tables that {@link FollowPfn} consults or tells, given when it is built so that a
 * follow_pfn never silently runs without a part of its VM. {@code io.guestmem.vm.VmMemory} passes its VM's
 * guest_memfd pages, poison registry, slot lock (twice: slot locks and write faults) and dirty log; a caller
 * that really wants none of a part says so with that part's {@code NONE} ({@link #standalone()}: all of them).
 *
 * @param privatePages which pages are private and their references (FOLL_GUEST row; the final put of a
 *                     deferred conversion); {@link PrivatePages#NONE} for memory without guest_memfd
 * @param poison       the HWPOISON decision's library marks (rows 5 and 11)
 * @param slotLocks    which slots are locked: they map base pages only ({@link HostMappingLevel#maxMappingLevel})
 * @param writeFaults  told of every successful write fault (a slot lock relaxing a READ-locked stage-2 entry)
 * @param dirtyLog     where a dirty release of a LOG_DIRTY_PAGES slot's page is marked
 *                     ({@link FollowPfn#releaseFaultinPage})
 */
public record FollowPfnCollaborators(PrivatePages privatePages, PoisonRegistry poison, SlotLocks slotLocks,
                                     WriteFaultHook writeFaults, DirtyLog dirtyLog) {

    public FollowPfnCollaborators {
        Objects.requireNonNull(privatePages, "privatePages (PrivatePages.NONE for none)");
        Objects.requireNonNull(poison, "poison");
        Objects.requireNonNull(slotLocks, "slotLocks (SlotLocks.NONE for none)");
        Objects.requireNonNull(writeFaults, "writeFaults (WriteFaultHook.NONE for none)");
        Objects.requireNonNull(dirtyLog, "dirtyLog (DirtyLog.NONE for none)");
    }

    /**
     * A follow_pfn on its own: no private memory, no locked slot, nobody told of write faults, dirty releases
     * dropped, and a poison registry of its own (poison is state, not a hook: there is no shared "none").
     */
    public static FollowPfnCollaborators standalone() {
        return new FollowPfnCollaborators(PrivatePages.NONE, new PoisonRegistry(), SlotLocks.NONE, WriteFaultHook.NONE,
                DirtyLog.NONE);
    }

    public FollowPfnCollaborators withPrivatePages(PrivatePages p) {
        return new FollowPfnCollaborators(p, poison, slotLocks, writeFaults, dirtyLog);
    }

    public FollowPfnCollaborators withPoison(PoisonRegistry p) {
        return new FollowPfnCollaborators(privatePages, p, slotLocks, writeFaults, dirtyLog);
    }

    public FollowPfnCollaborators withSlotLocks(SlotLocks l) {
        return new FollowPfnCollaborators(privatePages, poison, l, writeFaults, dirtyLog);
    }

    public FollowPfnCollaborators withWriteFaults(WriteFaultHook h) {
        return new FollowPfnCollaborators(privatePages, poison, slotLocks, h, dirtyLog);
    }

    public FollowPfnCollaborators withDirtyLog(DirtyLog d) {
        return new FollowPfnCollaborators(privatePages, poison, slotLocks, writeFaults, d);
    }
}
