package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;

import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One reference the library holds on a refcounted page (what {@code refcounted_page} stands for in 6.13): the
 * library's one page-reference type. Taken by {@link FollowPfn#follow} (a {@link PfnCache} keeps the one its
 * refresh got), counted per gfn by the {@link ReferenceTracker}, dropped once by
 * {@link FollowPfn#releaseFaultinPage} (or by the cache). A second release throws.
 *
 * <p>The library cannot raise a page's real refcount from userspace; this reference is the library's own
 * bookkeeping. On a guest_memfd page it also holds one count in the page's state ({@link PrivatePages#tryGet},
 * in the view {@link #guest()} names), which a conversion waits for: its release is the final put.
 */
public final class PageReference {
    private final ReferenceTracker tracker;
    private final Memslot slot;
    private final long gfn;
    private final RefcountedPage page;
    private final String holder;
    private final boolean guest;
    private final AtomicBoolean released = new AtomicBoolean();

    PageReference(ReferenceTracker tracker, Memslot slot, long gfn, RefcountedPage page, String holder, boolean guest) {
        this.tracker = tracker;
        this.slot = slot;
        this.gfn = gfn;
        this.page = page;
        this.holder = holder;
        this.guest = guest;
    }

    public Memslot slot() {
        return slot;
    }

    public int addressSpace() {
        return slot.addressSpace();
    }

    public long gfn() {
        return gfn;
    }

    public long pfn() {
        return page.pfn();
    }

    public RefcountedPage page() {
        return page;
    }

    /** Who took it ("follow_pfn"), for leak reports. */
    public String holder() {
        return holder;
    }

    /** Taken in the private view (a FOLL_GUEST lookup): the view its page-state count is put back to. */
    public boolean guest() {
        return guest;
    }

    public boolean isReleased() {
        return released.get();
    }

    /** Drops the reference from the tracker (once). */
    void release() {
        if (!released.compareAndSet(false, true)) {
            throw new IllegalStateException("reference on gfn 0x" + Long.toHexString(gfn) + " released twice");
        }
        tracker.release(this);
    }

    @Override
    public String toString() {
        return "PageReference[" + holder + (guest ? " FOLL_GUEST" : "") + ", as " + slot.addressSpace() + " slot " + slot.id() + " gfn 0x"
                + Long.toHexString(gfn) + ", " + KvmPfn.describe(page.pfn()) + " " + page.kind()
                + (released.get() ? ", released" : "") + "]";
    }
}
