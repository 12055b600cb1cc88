package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;

import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One reference the library holds on a refcounted page (what {@code refcounted_page} stands for in 6.13):
 * taken by {@link FollowPfn#follow} or a {@link PfnCache}, counted per gfn by the {@link ReferenceTracker},
 * dropped once by {@link FollowPfn#releaseFaultinPage} (or by the cache). A second release throws.
 *
 * <p>The library cannot raise a page's real refcount from userspace; this reference is the library's own
 * bookkeeping that the guest_memfd state machine consults before it lets a page change hands.
 */
public final class PageReference {
    private final ReferenceTracker tracker;
    private final Memslot slot;
    private final long gfn;
    private final RefcountedPage page;
    private final String holder;
    private final AtomicBoolean released = new AtomicBoolean();

    PageReference(ReferenceTracker tracker, Memslot slot, long gfn, RefcountedPage page, String holder) {
        this.tracker = tracker;
        this.slot = slot;
        this.gfn = gfn;
        this.page = page;
        this.holder = holder;
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

    /** Who took it ("follow_pfn", "pfn cache"), for leak reports. */
    public String holder() {
        return holder;
    }

    public boolean isReleased() {
        return released.get();
    }

    /** Drops the reference (the tracker's release listeners run if it was the last one on its gfn). */
    void release() {
        if (!released.compareAndSet(false, true)) {
            throw new IllegalStateException("reference on gfn 0x" + Long.toHexString(gfn) + " released twice");
        }
        tracker.release(this);
    }

    @Override
    public String toString() {
        return "PageReference[" + holder + ", as " + slot.addressSpace() + " slot " + slot.id() + " gfn 0x"
                + Long.toHexString(gfn) + ", " + KvmPfn.describe(page.pfn()) + " " + page.kind()
                + (released.get() ? ", released" : "") + "]";
    }
}
