package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotObserver;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.mmu.FollowPfnResult.Path;
import io.guestmem.mmu.RefcountedPage.Refcount;
import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.Vma;
import io.guestmem.procfs.VmFlag;
import io.guestmem.sys.Errno;

import java.util.ArrayList;
import java.util.List;

/**
 * KVM's {@code kvm_follow_pfn()} / {@code hva_to_pfn()} as merged in Linux 6.13 (virt/kvm/kvm_main.c), over the
 * kernel's view of this process (pagemap, kpageflags, smaps, MADV_POPULATE_*), with the seed's v9 options
 * ({@code guarded_by_mmu_notifier}, {@code allow_non_refcounted_struct_page}, {@code allow_unsafe_mappings})
 * and FOLL_GUEST (seed 004) on top as policies.
 *
 * <h2>The decision table ({@link #follow}; each row names its kvm_main.c counterpart)</h2>
 * <pre>
 *  #  step       condition                                            result
 *  -- pre-checks: kvm_follow_pfn() / __gfn_to_hva_many()
 *  1  slot       no slot for gfn, or the request's slot is no longer    NOSLOT              (kvm_is_error_hva → KVM_PFN_NOSLOT)
 *                current (deleted/moved = KVM_MEMSLOT_INVALID)
 *  2  slot       write fault on a READONLY slot                          RO_FAULT            (KVM_HVA_ERR_RO_BAD → KVM_PFN_ERR_RO_FAULT)
 *  3  slot       READONLY slot clears mapWritable                                            (*map_writable = false; map_writable = NULL)
 *  4  guest      mappability forbids this view (FOLL_GUEST rule)         FAULT               (seed 004: follow_page_pte returns NULL → -EFAULT)
 *  5  poison     gfn marked in the PoisonRegistry                        HWPOISON            (library mark, as kpageflags HWPOISON)
 *  -- hva_to_pfn_fast(): only "with FOLL_WRITE or map_writable" in KVM; here any present page
 *  6  fast       pagemap present; read fault                             pfn, read-only      (GUP of a present pte does not fault)
 *  7  fast       present; write (or mapWritable) and the pte looks       pfn, writable       (get_user_page_fast_only(FOLL_WRITE); the
 *                writable (exclusive, no zero/KSM page, no uffd-wp):                          kernel confirms with MADV_POPULATE_WRITE,
 *                POPULATE_WRITE succeeds without changing the pfn                             which faults nothing on a writable pte)
 *  -- hva_to_pfn_slow(): FOLL_HWPOISON | FOLL_HONOR_NUMA_FAULT | flags
 *  8  slow       not present and noWait                                  → row 13            (FOLL_NOWAIT: the library never faults then)
 *  9  slow       MADV_POPULATE_READ/WRITE, read pagemap again            pfn, writable=write (get_user_pages_unlocked)
 * 10  slow       read fault with mapWritable: upgrade iff the pte looks  writable            (get_user_page_fast_only(FOLL_WRITE) upgrade)
 *                writable and POPULATE_WRITE confirms it
 * 11  slow       populate fails EHWPOISON / kpageflags HWPOISON /        HWPOISON            (-EHWPOISON → KVM_PFN_ERR_HWPOISON)
 *                pfn in the PoisonRegistry
 * 12  slow       populate fails EINTR or EAGAIN                          SIGPENDING          (-EINTR/-EAGAIN → KVM_PFN_ERR_SIGPENDING)
 *  -- the VMA (mmap_read_lock; vma_lookup)
 * 13  vma        no VMA (smaps)                                          FAULT               (vma == NULL → KVM_PFN_ERR_FAULT)
 * 14  vma        VMA has pf or io                                        → remapped (17-21)   (VM_IO|VM_PFNMAP → hva_to_pfn_remapped)
 * 15  vma        noWait and vma_is_valid (r, plus w for a write)         NEEDS_IO            (FOLL_NOWAIT → KVM_PFN_ERR_NEEDS_IO)
 * 16  vma        otherwise (PROT_NONE, write to a read-only VMA, SIGBUS) FAULT               (KVM_PFN_ERR_FAULT)
 *  -- hva_to_pfn_remapped() ({@link #remappedDecision}, pure)
 * 17  remapped   pin and !allowUnsafeMappings                            FAULT               (6.13: -EINVAL → KVM_PFN_ERR_FAULT)
 * 18  remapped   write and the pte is not writable (VMA perms: the       RO_FAULT            (write && !args.writable)
 *                kernel hides PFNMAP ptes from userspace)
 * 19  remapped   struct page that cannot be refcounted and               FAULT               (v9: page && !is_refcounted && !allow_non_refcounted)
 *                !allowNonRefcountedStructPage
 * 20  remapped   not refcounted, !guardedByMmuNotifier, !allowUnsafe     FAULT               (v9: overrides RO_FAULT too)
 * 21  remapped   otherwise                                               pfn NOT_OBSERVABLE, never refcounted
 * </pre>
 * A successful GUP-path result (rows 6-10) holds a reference ({@link PageReference}, counted in
 * {@link #references()}) until {@link #releaseFaultinPage}; the page's kind comes from kpageflags
 * ({@link RefcountedPage}; both the v9 and the 6.13 rule say GUP pages are refcounted).
 *
 * <h2>Differences from the kernel, on purpose or by necessity</h2>
 * <ul>
 * <li>noWait never faults a non-present page in (KVM's FOLL_NOWAIT still faults anonymous memory that needs no
 *     IO): the page stays non-present and the answer is NEEDS_IO when the VMA would allow the access.</li>
 * <li>Userspace cannot read a pte's write bit. A write fault is confirmed by the kernel (MADV_POPULATE_WRITE,
 *     which honours the VMA's permissions, as GUP does); the mapWritable upgrade is tried only when the pte
 *     looks writable, so a zero page or a shared COW page is never broken by a read fault. If the kernel
 *     nevertheless changed the page (a private file page), the new pfn is what the result reports.</li>
 * <li>The result is a snapshot: take {@link FollowPfnResult#sequence()} and check
 *     {@link MmuNotifier#retryGfn} before using it, as KVM does under mmu_lock.</li>
 * </ul>
 */
public final class FollowPfn implements AutoCloseable {

    private static final System.Logger LOG = System.getLogger(FollowPfn.class.getName());

    private static volatile boolean allowUnsafeMappings;

    /** {@code kvm.allow_unsafe_mappings}: off by default; when on, PFNMAP memory may be pinned and used unguarded. */
    public static boolean allowUnsafeMappings() {
        return allowUnsafeMappings;
    }

    /** Sets the process-wide {@code allow_unsafe_mappings} switch (KVM's is a read-only module parameter). */
    public static void setAllowUnsafeMappings(boolean on) {
        allowUnsafeMappings = on;
    }

    private static final int POPULATE_RETRIES = 4;

    private final Memslots memslots;
    private final MmuNotifier notifier;
    private final PageGeometry geometry;
    private final HostView view;
    private final boolean ownsView;
    private final HostMappingLevel levels;
    private final ReferenceTracker references = new ReferenceTracker();
    private final FollowPfnCollaborators collaborators;
    private final PrivatePages privatePages;
    private final PoisonRegistry poison;
    private final WriteFaultHook writeFaults;
    private final DirtyLog dirtyLog;
    private final MemslotObserver slotObserver;
    private final List<String> leakReports = new ArrayList<>();
    private volatile boolean closed;

    /**
     * follow_pfn over {@code notifier}'s memslots and this process's page tables (opens its own {@link HostView}),
     * consulting and telling {@code collaborators} ({@link FollowPfnCollaborators#standalone()} for none).
     */
    public FollowPfn(MmuNotifier notifier, FollowPfnCollaborators collaborators) {
        this(notifier, HostView.openSelf(), true, collaborators);
    }

    /** follow_pfn over a shared {@link HostView} (not closed by {@link #close()}). */
    public FollowPfn(MmuNotifier notifier, HostView view, FollowPfnCollaborators collaborators) {
        this(notifier, view, false, collaborators);
    }

    private FollowPfn(MmuNotifier notifier, HostView view, boolean ownsView, FollowPfnCollaborators collaborators) {
        this.collaborators = java.util.Objects.requireNonNull(collaborators, "collaborators");
        this.privatePages = collaborators.privatePages();
        this.poison = collaborators.poison();
        this.writeFaults = collaborators.writeFaults();
        this.dirtyLog = collaborators.dirtyLog();
        this.notifier = notifier;
        this.memslots = notifier.memslots();
        this.geometry = memslots.geometry();
        this.view = view;
        this.ownsView = ownsView;
        LevelSizes sizes = geometry.equals(PageGeometry.host()) ? LevelSizes.host() : LevelSizes.of(geometry);
        this.levels = new HostMappingLevel(view, sizes, collaborators.slotLocks());
        this.slotObserver = new MemslotObserver() {
            @Override
            public void beforeCommit(MemslotChange change) { }

            @Override
            public void committed(MemslotChange change) {
                if (change.kind() == MemslotChange.Kind.DELETE || change.kind() == MemslotChange.Kind.MOVE) {
                    List<PageReference> left = references.unreleased(change.old());
                    if (!left.isEmpty()) report(change.kind() + " of slot " + change.old().id(), left);
                }
            }
        };
        memslots.addObserver(slotObserver);
    }

    public MmuNotifier notifier() {
        return notifier;
    }

    public HostView view() {
        return view;
    }

    /** The references results hold, counted per gfn (leak reports, and tests that check what is held). */
    public ReferenceTracker references() {
        return references;
    }

    /** What this follow_pfn consults and tells, as given at construction. */
    public FollowPfnCollaborators collaborators() {
        return collaborators;
    }

    /** The poison registry answered as HWPOISON (the collaborators'). */
    public PoisonRegistry poison() {
        return poison;
    }

    /** Host mapping levels over the same view. */
    public HostMappingLevel levels() {
        return levels;
    }

    /** Leak reports made so far (slot delete/move with references held, close). */
    public synchronized List<String> leakReports() {
        return List.copyOf(leakReports);
    }

    // ------------------------------------------------------------------ the table

    /** Runs the decision table (class comment) for one gfn. Errors are values; misuse throws. */
    public FollowPfnResult follow(FollowPfnRequest req) {
        if (closed) throw new IllegalStateException("FollowPfn is closed");
        final long seq = notifier.sequence(); // before the memslot lookup, as KVM's mmu_invalidate_seq
        final int as = req.slot() != null ? req.slot().addressSpace() : req.addressSpace();
        final long gfn = req.gfn();
        MemslotSet set = memslots.current(as);
        Memslot slot;
        if (req.slot() != null) {
            Memslot cur = set.byId(req.slot().id());
            slot = req.slot().equals(cur) ? cur : null; // row 1: deleted or moved = invalid
        } else {
            slot = set.findByGfn(gfn);
        }
        if (slot == null || !slot.containsGfn(gfn)) return error(as, -1, gfn, MemslotSet.BAD_HVA, PfnError.NOSLOT, seq, Path.PRECHECK);
        if (req.write() && slot.readOnly()) {
            return error(as, slot.id(), gfn, MemslotSet.RO_BAD_HVA, PfnError.RO_FAULT, seq, Path.PRECHECK); // row 2
        }
        final long hva = slot.userspaceAddr() + ((gfn - slot.baseGfn()) << geometry.shift());
        final boolean mapWritable = req.mapWritable() && !slot.readOnly(); // row 3
        if (!FollGuest.view(privatePages.mappability(slot, gfn), req.guest()).ok()) {
            return error(as, slot.id(), gfn, hva, PfnError.FAULT, seq, Path.PRECHECK); // row 4
        }
        if (poison.isGfnPoisoned(as, gfn)) return error(as, slot.id(), gfn, hva, PfnError.HWPOISON, seq, Path.PRECHECK); // row 5
        // The page's own count (guest_memfd) is taken before the host is touched, so a conversion that races
        // this lookup either waits for its release or makes the lookup fail here (converted meanwhile).
        if (!privatePages.tryGet(as, gfn, req.guest())) return error(as, slot.id(), gfn, hva, PfnError.FAULT, seq, Path.PRECHECK);
        FollowPfnResult r;
        try {
            r = hvaToPfn(req, slot, gfn, hva, mapWritable, seq);
        } catch (RuntimeException | Error e) {
            privatePages.put(as, gfn, req.guest());
            throw e;
        }
        if (r.reference() == null) privatePages.put(as, gfn, req.guest()); // nothing held: give the page count back now
        if (r.ok() && req.write()) writeFaults.writeFault(slot, gfn);
        return r;
    }

    private FollowPfnResult hvaToPfn(FollowPfnRequest req, Memslot slot, long gfn, long hva, boolean mapWritable, long seq) {
        final int as = slot.addressSpace();
        final long page = geometry.pageSize();
        for (int attempt = 0; ; attempt++) {
            long raw = view.entry(hva);
            boolean populated = false;
            if (!PagemapEntry.isPresent(raw)) {
                if (req.noWait()) return vmaPath(req, slot, gfn, hva, seq); // row 8
                int r = view.populate(hva, page, req.write());               // row 9
                if (r != 0) return populateFailed(req, slot, gfn, hva, seq, r);
                populated = true;
                raw = view.entry(hva);
                if (!PagemapEntry.isPresent(raw)) {
                    // Unmapped again between the populate and the read (reclaim, a racing DONTNEED): try again.
                    if (attempt < POPULATE_RETRIES) continue;
                    return error(as, slot.id(), gfn, hva, PfnError.FAULT, seq, Path.SLOW);
                }
            }
            long pfn = view.pfnOf(raw);
            long flags = view.flags(pfn);
            if (poisoned(pfn, flags)) return error(as, slot.id(), gfn, hva, PfnError.HWPOISON, seq, populated ? Path.SLOW : Path.FAST); // row 11
            Path path = populated ? Path.SLOW : Path.FAST;
            boolean writable = false;
            if (req.write()) {
                if (!populated) { // row 7: the kernel confirms the write; a non-writable pte is faulted (the slow path)
                    boolean looks = looksWritable(raw, flags);
                    int r = view.populate(hva, page, true);
                    if (r != 0) return populateFailed(req, slot, gfn, hva, seq, r);
                    long raw2 = view.entry(hva);
                    if (!PagemapEntry.isPresent(raw2)) {
                        if (attempt < POPULATE_RETRIES) continue;
                        return error(as, slot.id(), gfn, hva, PfnError.FAULT, seq, Path.SLOW);
                    }
                    if (raw2 != raw || !looks) path = Path.SLOW;
                    if (view.pfnOf(raw2) != pfn) {
                        pfn = view.pfnOf(raw2);
                        flags = view.flags(pfn);
                        if (poisoned(pfn, flags)) return error(as, slot.id(), gfn, hva, PfnError.HWPOISON, seq, Path.SLOW);
                    }
                    raw = raw2;
                }
                writable = true;
            } else if (mapWritable && looksWritable(raw, flags)) { // row 10
                if (view.populate(hva, page, true) == 0) {
                    long raw2 = view.entry(hva);
                    if (PagemapEntry.isPresent(raw2)) {
                        writable = true;
                        if (view.pfnOf(raw2) != pfn) { // the kernel did have to fault: report what it mapped
                            pfn = view.pfnOf(raw2);
                            flags = view.flags(pfn);
                            path = Path.SLOW;
                        }
                    }
                }
            }
            RefcountedPage pg = pfn == PagemapEntry.PFN_HIDDEN
                    ? new RefcountedPage(KvmPfn.HIDDEN, RefcountedPage.Kind.NOT_OBSERVED, RefcountedPage.UNKNOWN_FLAGS)
                    : RefcountedPage.of(pfn, flags);
            // GUP gave the page: refcounted under both the v9 and the 6.13 rule.
            PageReference ref = references.acquire(slot, gfn, pg, "follow_pfn", req.guest());
            MappingLevel level = req.wantLevel() ? levels.hostMappingLevel(hva) : null;
            return new FollowPfnResult(as, slot.id(), gfn, hva, pg.pfn(), null,
                    pfn == PagemapEntry.PFN_HIDDEN ? PfnObservability.HIDDEN : PfnObservability.VISIBLE,
                    writable, pg, ref, level, seq, path);
        }
    }

    private FollowPfnResult populateFailed(FollowPfnRequest req, Memslot slot, long gfn, long hva, long seq, int r) {
        if (r == -Errno.EHWPOISON.number) return error(slot.addressSpace(), slot.id(), gfn, hva, PfnError.HWPOISON, seq, Path.SLOW);
        if (r == -Errno.EINTR.number || r == -Errno.EAGAIN.number) {
            return error(slot.addressSpace(), slot.id(), gfn, hva, PfnError.SIGPENDING, seq, Path.SLOW); // row 12
        }
        return vmaPath(req, slot, gfn, hva, seq); // GUP failed: KVM looks at the VMA
    }

    private FollowPfnResult vmaPath(FollowPfnRequest req, Memslot slot, long gfn, long hva, long seq) {
        final int as = slot.addressSpace();
        Vma vma = view.vma(hva);
        if (vma == null) return error(as, slot.id(), gfn, hva, PfnError.FAULT, seq, Path.VMA); // row 13
        if (vma.has(VmFlag.PFNMAP) || vma.has(VmFlag.IO)) return remapped(req, slot, gfn, hva, vma, seq); // row 14
        if (req.noWait() && vmaIsValid(vma, req.write())) {
            return error(as, slot.id(), gfn, hva, PfnError.NEEDS_IO, seq, Path.VMA); // row 15
        }
        return error(as, slot.id(), gfn, hva, PfnError.FAULT, seq, Path.VMA); // row 16
    }

    private FollowPfnResult remapped(FollowPfnRequest req, Memslot slot, long gfn, long hva, Vma vma, long seq) {
        boolean pteWritable = vma.perms().length() > 1 && vma.perms().charAt(1) == 'w';
        // The pfn is hidden from every reader: kvm_pfn_to_refcounted_page cannot be evaluated (NO_PAGE assumed).
        Refcount rc = RefcountedPage.seedRule(RefcountedPage.Kind.NOT_OBSERVED, RefcountedPage.Path.REMAPPED);
        PfnError e = remappedDecision(req.pin(), req.guardedByMmuNotifier(), allowUnsafeMappings,
                req.allowNonRefcountedStructPage(), req.write(), pteWritable, rc);
        if (e != null) return error(slot.addressSpace(), slot.id(), gfn, hva, e, seq, Path.REMAPPED);
        RefcountedPage pg = new RefcountedPage(KvmPfn.NOT_OBSERVABLE, RefcountedPage.Kind.NOT_OBSERVED,
                RefcountedPage.UNKNOWN_FLAGS);
        return new FollowPfnResult(slot.addressSpace(), slot.id(), gfn, hva, KvmPfn.NOT_OBSERVABLE, null,
                PfnObservability.NOT_OBSERVABLE, pteWritable, pg, null,
                req.wantLevel() ? MappingLevel.PAGE : null, seq, Path.REMAPPED);
    }

    /**
     * Rows 17-21: {@code hva_to_pfn_remapped()} of 6.13 with the v9 checks at its {@code out:} label. Returns
     * the error, or null for success. Pure.
     */
    public static PfnError remappedDecision(boolean pin, boolean guarded, boolean allowUnsafe,
                                            boolean allowNonRefcounted, boolean write, boolean pteWritable,
                                            Refcount refcount) {
        if (pin && !allowUnsafe) return PfnError.FAULT;                                    // 17
        PfnError result = write && !pteWritable ? PfnError.RO_FAULT : null;                // 18
        if (refcount == Refcount.STRUCT_PAGE_NOT_REFCOUNTED && !allowNonRefcounted) return PfnError.FAULT; // 19
        if (!refcount.refcounted() && !guarded && !allowUnsafe) return PfnError.FAULT;     // 20
        return result;                                                                     // 21
    }

    /** {@code vma_is_valid()}: readable, and writable for a write fault. */
    static boolean vmaIsValid(Vma vma, boolean write) {
        String p = vma.perms();
        return p.charAt(0) == 'r' && (!write || p.charAt(1) == 'w');
    }

    /**
     * Whether the pte can be assumed writable without a fault: mapped only here, not the zero page, not a KSM
     * page, not uffd-write-protected, and for an anonymous page exclusively owned (PG_anon_exclusive, which
     * kpageflags shows as bit 34). The kernel confirms it (POPULATE_WRITE) before the library says writable.
     */
    static boolean looksWritable(long raw, long flags) {
        if (PagemapEntry.isUffdWp(raw) || !PagemapEntry.isExclusive(raw)) return false;
        if (flags == RefcountedPage.UNKNOWN_FLAGS) return true;
        if (KPageFlag.ZERO_PAGE.in(flags) || RefcountedPage.isKsm(flags)) return false;
        return !KPageFlag.ANON.in(flags) || KPageFlag.MAPPEDTODISK.in(flags);
    }

    private boolean poisoned(long pfn, long flags) {
        return poison.isPoisoned(pfn, flags);
    }

    private static FollowPfnResult error(int as, int slotId, long gfn, long hva, PfnError e, long seq, Path path) {
        return new FollowPfnResult(as, slotId, gfn, hva, e.code, e, null, false, null, null, null, seq, path);
    }

    // ------------------------------------------------------------------ release

    /**
     * 6.13's {@code kvm_release_faultin_page(kvm, page, unused, dirty)}: a result without a reference is a
     * no-op; otherwise the reference is dropped, and a dirty, used page of a LOG_DIRTY_PAGES slot is marked in
     * the {@link DirtyLog} first (the library's {@code mark_page_dirty_in_slot}). Releasing twice throws.
     */
    public void releaseFaultinPage(FollowPfnResult result, boolean unused, boolean dirty) {
        if (result == null || result.reference() == null) return;
        release(result.reference(), unused, dirty);
    }

    /** Drops a reference handed out by {@link #follow} (a {@link PfnCache} keeps the reference alone). */
    void release(PageReference ref, boolean unused, boolean dirty) {
        if (!unused && dirty && ref.slot().logsDirty()) {
            dirtyLog.markDirty(ref.slot(), ref.gfn(), 1);
        }
        ref.release();
        privatePages.put(ref.addressSpace(), ref.gfn(), ref.guest());
    }

    private void report(String when, List<PageReference> left) {
        String msg = when + ": " + left.size() + " unreleased page reference(s): " + left;
        synchronized (this) {
            leakReports.add(msg);
        }
        LOG.log(System.Logger.Level.WARNING, msg);
    }

    /** Reports references still held and detaches from the memslots; later lookups throw. Idempotent. */
    @Override
    public void close() {
        if (closed) return;
        closed = true;
        memslots.removeObserver(slotObserver);
        List<PageReference> left = references.unreleased();
        if (!left.isEmpty()) report("close", left);
        if (ownsView) view.close();
    }
}
