package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.procfs.PagemapEntry;

/**
 * Translation of a range of gfns into pfns with one pagemap read per chunk: the library's
 * {@code kvm_prefetch_pages} / batched {@code gfn_to_pfn}. Per chunk (at most {@code chunkPages} pages of one
 * slot): one pagemap pread, one MADV_POPULATE_* per run of pages that need faulting (a write chunk: one
 * MADV_POPULATE_WRITE over the chunk, which faults only what is not writable and honours the VMA), one more
 * pagemap pread if anything was populated (and, if asked, kpageflags coalesced over runs of consecutive pfns). No
 * per-page syscall on the normal path; a chunk whose populate fails (a PROT_NONE hole, a PFNMAP range, poison)
 * falls back to {@link FollowPfn#follow} page by page, so every answer is the decision table's.
 *
 * <p>Results go into the caller's {@code long[]} in {@link KvmPfn}'s encoding. No references are taken: like
 * KVM's prefetch under mmu_lock, a batch is only valid under the notifier's retry check — {@link #translate}
 * returns the sequence to check. After warm-up the normal path allocates nothing. One instance per thread.
 */
public final class FollowPfnBatch {
    private final FollowPfn fp;
    private final MmuNotifier notifier;
    private final Memslots memslots;
    private final HostView view;
    private final PageGeometry geometry;
    private final int chunk;
    private final long[] raw, pfns, flags;
    private long populateCalls, pagemapReads;
    private boolean readPageFlags;

    public FollowPfnBatch(FollowPfn fp, int chunkPages) {
        if (chunkPages <= 0) throw new IllegalArgumentException("chunk must be positive: " + chunkPages);
        this.fp = fp;
        this.notifier = fp.notifier();
        this.memslots = notifier.memslots();
        this.view = fp.view();
        this.geometry = memslots.geometry();
        this.chunk = chunkPages;
        raw = new long[chunkPages];
        pfns = new long[chunkPages];
        flags = new long[chunkPages];
    }

    /**
     * Translates {@code count} gfns from {@code firstGfn} of {@code addressSpace} (shared view, no FOLL_GUEST)
     * into {@code out[off..off+count)}: a pfn, {@link KvmPfn#HIDDEN}, {@link KvmPfn#NOT_OBSERVABLE} or an error
     * code. Returns the notifier sequence taken first: check {@link MmuNotifier#retryGfn}/{@code retry} with it.
     */
    public long translate(int addressSpace, long firstGfn, int count, boolean write, long[] out, int off) {
        if (count < 0 || off < 0 || off + count > out.length) throw new IndexOutOfBoundsException();
        final long seq = notifier.sequence();
        final MemslotSet set = memslots.current(addressSpace);
        final long page = geometry.pageSize();
        PrivatePages mq = fp.collaborators().privatePages();
        PoisonRegistry poison = fp.poison();
        int i = 0;
        while (i < count) {
            long gfn = firstGfn + i;
            int idx = set.indexOf(gfn);
            if (idx < 0) {
                out[off + i++] = KvmPfn.NOSLOT;
                continue;
            }
            Memslot slot = set.slotAt(idx);
            int n = (int) Math.min(Math.min(count - i, set.endGfnAt(idx) - gfn), chunk);
            if (write && slot.readOnly()) {
                for (int k = 0; k < n; k++) out[off + i + k] = KvmPfn.ERR_RO_FAULT;
                i += n;
                continue;
            }
            long hva = set.hvaAt(idx, gfn);
            boolean fallback = false;
            if (write) {
                populateCalls++;
                fallback = view.populate(hva, n * page, true) != 0;
            }
            view.entries(hva, raw, 0, n);
            pagemapReads++;
            if (!write && !fallback) {
                boolean again = false;
                for (int k = 0; k < n && !fallback; ) {
                    if (PagemapEntry.isPresent(raw[k]) || !allowed(mq, slot, gfn + k)) {
                        k++;
                        continue;
                    }
                    int e = k;
                    while (e < n && !PagemapEntry.isPresent(raw[e]) && allowed(mq, slot, gfn + e)) e++;
                    populateCalls++;
                    if (view.populate(hva + k * page, (e - k) * page, false) != 0) fallback = true;
                    again = true;
                    k = e;
                }
                if (again && !fallback) {
                    view.entries(hva, raw, 0, n);
                    pagemapReads++;
                }
            }
            if (fallback) {
                for (int k = 0; k < n; k++) out[off + i + k] = single(slot, gfn + k, write);
                i += n;
                continue;
            }
            for (int k = 0; k < n; k++) pfns[k] = view.pfnOf(raw[k]);
            if (readPageFlags) view.flags(pfns, flags, n);
            else java.util.Arrays.fill(flags, 0, n, RefcountedPage.UNKNOWN_FLAGS);
            for (int k = 0; k < n; k++) {
                long g = gfn + k;
                long p = pfns[k];
                long v;
                if (!allowed(mq, slot, g)) v = KvmPfn.ERR_FAULT;
                else if (poison.isGfnPoisoned(addressSpace, g)) v = KvmPfn.ERR_HWPOISON;
                else if (p == PagemapEntry.PFN_NONE) v = single(slot, g, write); // raced with an unmap
                else if (p == PagemapEntry.PFN_HIDDEN) v = KvmPfn.HIDDEN;
                else if (poison.isPoisoned(p, flags[k])) v = KvmPfn.ERR_HWPOISON;
                else v = p;
                out[off + i + k] = v;
            }
            i += n;
        }
        return seq;
    }

    private static boolean allowed(PrivatePages mq, Memslot slot, long gfn) {
        return FollGuest.view(mq.mappability(slot, gfn), false).ok();
    }

    /** The decision table for one page, without keeping a reference. */
    private long single(Memslot slot, long gfn, boolean write) {
        FollowPfnResult r = fp.follow(FollowPfnRequest.read(gfn).withSlot(slot).withWrite(write));
        fp.releaseFaultinPage(r, true, false);
        return r.pfn();
    }

    /**
     * Also read kpageflags of the translated pfns to catch HWPOISON on a page that is still mapped (off by
     * default). Off, a poisoned page is still caught the way the kernel reports it to a process: memory_failure
     * unmaps it, pagemap shows it not present, and the populate answers EHWPOISON (then the table says
     * HWPOISON). kpageflags is pfn-indexed: scattered 4K pfns cost one pread per run of consecutive pfns.
     */
    public FollowPfnBatch readPageFlags(boolean on) {
        readPageFlags = on;
        return this;
    }

    /** MADV_POPULATE calls made so far (for tests and benchmarks: proves batching). */
    public long populateCalls() {
        return populateCalls;
    }

    /** Pagemap reads made so far. */
    public long pagemapReads() {
        return pagemapReads;
    }
}
