package io.guestmem.mmu;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.sys.Posix;

import java.util.ArrayDeque;
import java.util.Deque;

/**
 * One VM's worth of memslots + notifier + follow_pfn over real host regions, and the test's own independent
 * readers of the kernel's view (pagemap, kpageflags) to check the library against.
 */
final class Fixture implements AutoCloseable {
    static final long PAGE = Posix.PAGE_SIZE;

    final Memslots memslots = new Memslots();
    final MmuNotifier notifier = new MmuNotifier(memslots);
    final FollowPfn fp = new FollowPfn(notifier, FollowPfnCollaborators.standalone());
    final Pagemap pagemap = Pagemap.openSelf();
    final KPageFlags kpf = KPageFlags.open();
    private final Deque<AutoCloseable> closers = new ArrayDeque<>();
    private int nextSlot;
    private boolean closed;
    private long nextGfn = 1L << 18; // 1 GiB in 4K frames: slots start PUD-congruent with PUD-aligned regions

    /** A second follow_pfn over the same memslots with {@code c}; its references are dropped and it is closed with the fixture. */
    FollowPfn followPfn(FollowPfnCollaborators c) {
        return followPfn(c, FollowPfnOptions.defaults());
    }

    /** As {@link #followPfn(FollowPfnCollaborators)}, built with {@code options}. */
    FollowPfn followPfn(FollowPfnCollaborators c, FollowPfnOptions options) {
        FollowPfn other = new FollowPfn(notifier, c, options);
        closers.push(() -> {
            for (PageReference r : other.references().unreleased()) r.release();
            other.close();
        });
        return other;
    }

    <T extends AutoCloseable> T own(T c) {
        closers.push(c);
        return c;
    }

    /** Adds a slot over the region, at the next free gfn aligned to 1G-worth of pages; returns it. */
    Memslot slot(HostRegion r, int flags) {
        return slot(r.address(), r.size(), flags);
    }

    Memslot slot(long hva, long size, int flags) {
        return slotAt(nextGfn, hva, size, flags);
    }

    /** A slot at an explicit base gfn (to build misaligned layouts). */
    Memslot slotAt(long gfn, long hva, long size, int flags) {
        long end = gfn + size / PAGE;
        // the next default slot: 1G-aligned (congruent with 1G-aligned regions), one 1G gap after this one
        nextGfn = Math.max(nextGfn, ((end + (1L << 18) - 1) & -(1L << 18)) + (1L << 18));
        int id = nextSlot++;
        memslots.setMemslot(0, id, flags, gfn * PAGE, size, hva);
        return memslots.current().byId(id);
    }

    long gfn(Memslot s, long offset) {
        return s.baseGfn() + offset / PAGE;
    }

    /** The test's own read of pagemap: pfn, PFN_NONE or PFN_HIDDEN. */
    long pagemapPfn(long hva) {
        return pagemap.pfnOf(pagemap.readRaw(hva & -PAGE));
    }

    /** {@code r} succeeded with a visible pfn, and it is pagemap's pfn for {@code r.hva()} read now. */
    void assertPfnIsPagemaps(FollowPfnResult r) {
        org.junit.jupiter.api.Assertions.assertTrue(r.ok(), r::toString);
        org.junit.jupiter.api.Assertions.assertEquals(PfnObservability.VISIBLE, r.observability(), r::toString);
        long pm = pagemapPfn(r.hva());
        org.junit.jupiter.api.Assertions.assertTrue(pm >= 0, "pagemap shows no pfn for " + r);
        org.junit.jupiter.api.Assertions.assertEquals(pm, r.pfn(), "the library's pfn is pagemap's");
        org.junit.jupiter.api.Assertions.assertTrue(KvmPfn.isRealPfn(r.pfn()));
    }

    boolean present(long hva) {
        return PagemapEntry.isPresent(pagemap.readRaw(hva & -PAGE));
    }

    long flags(long pfn) {
        return kpf.read(pfn);
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        for (PageReference r : fp.references().unreleased()) r.release();
        fp.close();
        while (!closers.isEmpty()) {
            try {
                closers.pop().close();
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        }
        kpf.close();
        pagemap.close();
    }
}
