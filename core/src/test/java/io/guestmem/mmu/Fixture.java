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
    final FollowPfn fp = new FollowPfn(notifier);
    final Pagemap pagemap = Pagemap.openSelf();
    final KPageFlags kpf = KPageFlags.open();
    private final Deque<AutoCloseable> closers = new ArrayDeque<>();
    private int nextSlot;
    private long nextGfn = 0x1000;

    <T extends AutoCloseable> T own(T c) {
        closers.push(c);
        return c;
    }

    /** Adds a slot over the region, at the next free gfn aligned to 1G-worth of pages; returns it. */
    Memslot slot(HostRegion r, int flags) {
        return slot(r.address(), r.size(), flags);
    }

    Memslot slot(long hva, long size, int flags) {
        long gfn = nextGfn;
        nextGfn += Math.max(size / PAGE, 1L << 18) + (1L << 18); // keep 1G congruence and gaps between slots
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

    boolean present(long hva) {
        return PagemapEntry.isPresent(pagemap.readRaw(hva & -PAGE));
    }

    long flags(long pfn) {
        return kpf.read(pfn);
    }

    @Override
    public void close() {
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
