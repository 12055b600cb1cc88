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
import io.guestmem.sys.SyscallException;
import io.guestmem.sys.UseAfterClose;

import java.util.ArrayList;
import java.util.List;

/**
 * KVM's {@code kvm_follow_pfn()} / {@code hva_to_pfn()} as merged in Linux 6.13 (virt/kvm/kvm_main.c), over the
 * kernel's view of this process (pagemap, kpageflags, smaps, MADV_POPULATE_*), with two proposals on top as
 * policies: the options of "KVM: mmu: Improve handling of non-refcounted pfns" (David Stevens, PATCH v9 3/6,
 * 2023, <a href="https://lore.kernel.org/all/?q=s%3A%22Improve+handling+of+non-refcounted+pfns%22">lore</a>;
 * "v9" below): {@code guarded_by_mmu_notifier}, {@code allow_non_refcounted_struct_page},
 * {@code allow_unsafe_mappings}; and FOLL_GUEST ({@link FollGuest}). What it consults besides the page tables
 * (private pages, poison marks, slot locks, the write-fault and dirty-log listeners) it is given when it is
 * built ({@link FollowPfnCollaborators}).
 *
 * <h2>The decision table ({@link #follow}; each row names its kvm_main.c counterpart)</h2>
 * The code reads as kvm_main.c does: {@link #follow} runs the pre-checks, {@code hvaToPfn} tries
 * {@code hvaToPfnFast}, then {@code hvaToPfnSlow}, then the VMA ({@code vmaLookup}, which hands VM_PFNMAP/VM_IO
 * to {@code hvaToPfnRemapped}); every step answers through one lookup context ({@code Lookup}).
 * <pre>
 *  #  step       condition                                            result
 *  -- pre-checks: kvm_follow_pfn() / __gfn_to_hva_many()
 *  1  slot       no slot for gfn, or the request's slot is no longer    NOSLOT              (kvm_is_error_hva → KVM_PFN_NOSLOT)
 *                current (deleted/moved = KVM_MEMSLOT_INVALID)
 *  2  slot       write fault on a READONLY slot                          RO_FAULT            (KVM_HVA_ERR_RO_BAD → KVM_PFN_ERR_RO_FAULT)
 *  3  slot       READONLY slot clears mapWritable                                            (*map_writable = false; map_writable = NULL)
 *  4  guest      mappability forbids this view (FollGuest.view)          FAULT               (FOLL_GUEST RFC: follow_page_pte returns NULL → -EFAULT)
 *  5  poison     gfn marked in the PoisonRegistry                        HWPOISON            (library mark, as kpageflags HWPOISON)
 *     guest      the page-state reference cannot be taken (converted     FAULT               (a page in no view)
 *                since row 4)
 *  -- hva_to_pfn_fast(): only "with FOLL_WRITE or map_writable" in KVM; here any present page
 *  6  fast       pagemap present; read fault                             pfn, read-only      (GUP of a present pte does not fault)
 *  7  fast       present; write (or mapWritable) and the pte looks       pfn, writable       (get_user_page_fast_only(FOLL_WRITE); the
 *                writable (exclusive, no zero/KSM page, no uffd-wp):                          kernel confirms with MADV_POPULATE_WRITE,
 *                POPULATE_WRITE succeeds without changing the pfn;                            which faults nothing on a writable pte)
 *                otherwise a write goes to the slow step
 *  -- hva_to_pfn_slow(): FOLL_HWPOISON | FOLL_HONOR_NUMA_FAULT | flags
 *  8  slow       not present and noWait                                  → row 13            (FOLL_NOWAIT: the library never faults then)
 *  9  slow       MADV_POPULATE_READ/WRITE, read pagemap again            pfn, writable=write (get_user_pages_unlocked)
 * 10  fast/slow  read fault with mapWritable: upgrade iff the pte looks  writable            (get_user_page_fast_only(FOLL_WRITE) upgrade)
 *                writable and POPULATE_WRITE confirms it
 * 11  fast/slow  populate fails EHWPOISON / kpageflags HWPOISON /        HWPOISON            (-EHWPOISON → KVM_PFN_ERR_HWPOISON)
 *                pfn in the PoisonRegistry (PoisonRegistry.isPoisoned)
 * 12  slow       populate fails EINTR or EAGAIN                          SIGPENDING          (-EINTR/-EAGAIN → KVM_PFN_ERR_SIGPENDING)
 *  -- the VMA (mmap_read_lock; vma_lookup)
 * 13  vma        no VMA (smaps)                                          FAULT               (vma == NULL → KVM_PFN_ERR_FAULT)
 * 14  vma        VMA has pf or io                                        → remapped (17-21)   (VM_IO|VM_PFNMAP → hva_to_pfn_remapped)
 * 15  vma        noWait and vma_is_valid (r, plus w for a write)         NEEDS_IO            (FOLL_NOWAIT → KVM_PFN_ERR_NEEDS_IO)
 * 16  vma        otherwise (PROT_NONE, write to a read-only VMA, SIGBUS) FAULT               (KVM_PFN_ERR_FAULT)
 *  -- hva_to_pfn_remapped() ({@link #remappedDecision}, pure)
 * 17  remapped   pin and !allowUnsafeMappings                            FAULT               (6.13: -EINVAL → KVM_PFN_ERR_FAULT)
 * 18  remapped   write and the pte is not writable (VMA perms: the       RO_FAULT            ({@code write && !args.writable})
 *                kernel hides PFNMAP ptes from userspace)
 * 19  remapped   struct page that cannot be refcounted and               FAULT               (v9: {@code page && !is_refcounted && !allow_non_refcounted})
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

    private static final int POPULATE_RETRIES = 4;

    private final Memslots memslots;
    private final MmuNotifier notifier;
    private final PageGeometry geometry;
    private final HostView view;
    private final boolean ownsView;
    private final HostMappingLevel levels;
    private final ReferenceTracker references = new ReferenceTracker();
    private final FollowPfnCollaborators collaborators;
    private final FollowPfnOptions options;
    private final PrivatePages privatePages;
    private final PoisonRegistry poison;
    private final WriteFaultHook writeFaults;
    private final DirtyLog dirtyLog;
    private final MemslotObserver slotObserver;
    private final List<String> leakReports = new ArrayList<>();
    private volatile boolean closed;

    /**
     * follow_pfn over {@code notifier}'s memslots and this process's page tables (opens its own {@link HostView}),
     * consulting and telling {@code collaborators} ({@link FollowPfnCollaborators#standalone()} for none), with
     * {@link FollowPfnOptions#defaults()}.
     */
    public FollowPfn(MmuNotifier notifier, FollowPfnCollaborators collaborators) {
        this(notifier, collaborators, FollowPfnOptions.defaults());
    }

    /** As {@link #FollowPfn(MmuNotifier, FollowPfnCollaborators)}, with {@code options} fixed for its lifetime. */
    public FollowPfn(MmuNotifier notifier, FollowPfnCollaborators collaborators, FollowPfnOptions options) {
        this(notifier, HostView.openSelf(), true, collaborators, options);
    }

    /** follow_pfn over a shared {@link HostView} (not closed by {@link #close()}). */
    public FollowPfn(MmuNotifier notifier, HostView view, FollowPfnCollaborators collaborators) {
        this(notifier, view, false, collaborators, FollowPfnOptions.defaults());
    }

    /** follow_pfn over a shared {@link HostView} (not closed by {@link #close()}), with {@code options}. */
    public FollowPfn(MmuNotifier notifier, HostView view, FollowPfnCollaborators collaborators, FollowPfnOptions options) {
        this(notifier, view, false, collaborators, options);
    }

    private FollowPfn(MmuNotifier notifier, HostView view, boolean ownsView, FollowPfnCollaborators collaborators,
                      FollowPfnOptions options) {
        this.collaborators = java.util.Objects.requireNonNull(collaborators, "collaborators");
        this.options = java.util.Objects.requireNonNull(options, "options");
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

    /** The rule and module parameters fixed at construction. */
    public FollowPfnOptions options() {
        return options;
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

    /**
     * One lookup in flight: what {@code kvm_follow_pfn()}'s helpers share ({@code struct kvm_follow_pfn} plus the
     * slot, the hva and the notifier sequence taken first), so each step answers with
     * {@link #fail}/{@link FollowPfn#resolvePfn} instead of repeating them.
     *
     * @param mapWritable the request's mapWritable after row 3 (cleared for a READONLY slot)
     */
    private record Lookup(FollowPfnRequest req, Memslot slot, long gfn, long hva, boolean mapWritable, long seq) {
        boolean write() {
            return req.write();
        }

        /** The error {@code e}, answered by {@code path}. */
        FollowPfnResult fail(PfnError e, Path path) {
            return new FollowPfnResult(slot.addressSpace(), slot.id(), gfn, hva, e.code, e, null, false, null, null,
                    null, seq, path, null);
        }

        /** Row 2: {@code __gfn_to_hva_many} answers KVM_HVA_ERR_RO_BAD instead of an hva. */
        FollowPfnResult readOnlySlot() {
            return new FollowPfnResult(slot.addressSpace(), slot.id(), gfn, MemslotSet.RO_BAD_HVA, PfnError.RO_FAULT.code,
                    PfnError.RO_FAULT, null, false, null, null, null, seq, Path.PRECHECK, null);
        }
    }

    /** Runs the decision table (class comment) for one gfn. Errors are values; misuse throws. */
    public FollowPfnResult follow(FollowPfnRequest req) {
        if (closed) throw UseAfterClose.of("FollowPfn", "follow()");
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
        if (slot == null || !slot.containsGfn(gfn)) {                                                    // row 1
            return new FollowPfnResult(as, -1, gfn, MemslotSet.BAD_HVA, PfnError.NOSLOT.code, PfnError.NOSLOT, null,
                    false, null, null, null, seq, Path.PRECHECK, null);
        }
        Lookup l = new Lookup(req, slot, gfn, slot.userspaceAddr() + ((gfn - slot.baseGfn()) << geometry.shift()),
                req.mapWritable() && !slot.readOnly(), seq);                                              // row 3
        if (req.write() && slot.readOnly()) return l.readOnlySlot();                                      // row 2
        Mappability m = privatePages.mappability(slot, gfn);
        if (!FollGuest.view(m, req.guest()).ok()) return l.fail(PfnError.FAULT, Path.PRECHECK);       // row 4
        if (poison.isGfnPoisoned(as, gfn)) return l.fail(PfnError.HWPOISON, Path.PRECHECK);              // row 5
        // The page's own count (guest_memfd) is taken before the host is touched, so a conversion that races
        // this lookup either waits for its release or makes the lookup fail here (converted meanwhile).
        if (!privatePages.tryGet(slot, gfn, req.guest())) return l.fail(PfnError.FAULT, Path.PRECHECK);
        FollowPfnResult r;
        try {
            // row 4a: a private page (FOLL_GUEST passed row 4 only for GUEST; the reference just taken keeps it
            // so) is the guest_memfd's, resolved through its file; private by marking only, through the hva.
            r = req.guest() && m == Mappability.GUEST ? guestMemfdPfn(l) : null;
            if (r == null) r = hvaToPfn(l);
        } catch (RuntimeException | Error e) {
            privatePages.put(slot, gfn, req.guest());
            throw e;
        }
        if (r.reference() == null) privatePages.put(slot, gfn, req.guest()); // nothing held: give the page count back now
        if (r.ok() && req.write()) writeFaults.writeFault(slot, gfn);
        return r;
    }

    /**
     * Row 4a, {@code kvm_gmem_get_pfn()} for FOLL_GUEST on a private page: the page is resolved through its
     * guest_memfd's file and offset ({@link PrivatePages#resolvePrivate}: allocated if absent, nothing mapped),
     * so no host page table entry is made and a later conversion finds the host mapping as empty as it was. The
     * folio is referenced (kvm_gmem_get_pfn returns it with a reference, released by
     * {@code kvm_release_faultin_page}), mapped writable unless the slot is READONLY (KVM's
     * {@code map_writable} for a private fault), and its pfn is {@link KvmPfn#GUEST_MEMFD_PRIVATE}: no reader
     * sees a pfn without a host mapping. Null when no file backs the page (private by marking only): the hva
     * steps answer then. A failed allocation answers by its errno as GUP's would: EHWPOISON → HWPOISON,
     * EINTR/EAGAIN → SIGPENDING, anything else (ENOMEM, ENOSPC, ...) → FAULT.
     */
    private FollowPfnResult guestMemfdPfn(Lookup l) {
        GuestMemfdResolution gm;
        try {
            gm = privatePages.resolvePrivate(l.slot(), l.gfn());
        } catch (SyscallException e) {
            PfnError err = e.errno() == Errno.EHWPOISON.number ? PfnError.HWPOISON
                    : e.errno() == Errno.EINTR.number || e.errno() == Errno.EAGAIN.number ? PfnError.SIGPENDING
                    : PfnError.FAULT;
            LOG.log(System.Logger.Level.DEBUG, () -> "follow_pfn gfn 0x" + Long.toHexString(l.gfn()) + ": " + e.getMessage());
            return l.fail(err, Path.GUEST_MEMFD);
        }
        if (gm == null) return null;
        RefcountedPage pg = new RefcountedPage(KvmPfn.GUEST_MEMFD_PRIVATE, RefcountedPage.Kind.NOT_OBSERVED,
                RefcountedPage.UNKNOWN_FLAGS);
        PageReference ref = references.acquire(l.slot(), l.gfn(), pg, "follow_pfn", true);
        return new FollowPfnResult(l.slot().addressSpace(), l.slot().id(), l.gfn(), l.hva(), KvmPfn.GUEST_MEMFD_PRIVATE,
                null, PfnObservability.GUEST_MEMFD_PRIVATE, !l.slot().readOnly(), pg, ref,
                l.req().wantLevel() ? MappingLevel.PAGE : null, l.seq(), Path.GUEST_MEMFD, gm);
    }

    /**
     * {@code hva_to_pfn()}: the fast step for a present page, the slow step (a fault) when it did not answer,
     * and the VMA when GUP failed. Rows 6-21.
     */
    private FollowPfnResult hvaToPfn(Lookup l) {
        long raw = view.entry(l.hva());
        boolean present = PagemapEntry.isPresent(raw);
        FollowPfnResult r = present ? hvaToPfnFast(l, raw) : null;            // rows 6-7
        if (r == null && (present || !l.req().noWait())) r = hvaToPfnSlow(l); // rows 9-12; row 8: noWait faults nothing in
        return r != null ? r : vmaLookup(l);                                   // rows 13-16, 14 → hvaToPfnRemapped
    }

    /**
     * {@code hva_to_pfn_fast()}, rows 6-7: a present page answered without a fault, or null for the slow step.
     * KVM's fast path only runs for a write or mapWritable (get_user_page_fast_only(FOLL_WRITE)); here a read of
     * a present page is answered too, since GUP of a present pte does not fault. A write (or the mapWritable
     * upgrade) needs a pte that looks writable, which the kernel confirms: MADV_POPULATE_WRITE faults nothing
     * on a writable pte, so an unchanged entry after it is the fast answer; a changed or vanished one means the
     * kernel did fault, and the slow step reports what it mapped.
     */
    private FollowPfnResult hvaToPfnFast(Lookup l, long raw) {
        long pfn = view.pfnOf(raw);
        long flags = view.flags(pfn);
        if (poison.isPoisoned(pfn, flags)) return l.fail(PfnError.HWPOISON, Path.FAST);           // row 11, no fault needed
        boolean wantWritable = l.write() || l.mapWritable();
        if (!wantWritable || !looksWritable(raw, flags)) {
            return l.write() ? null : resolvePfn(l, pfn, flags, false, Path.FAST);                // row 7 needs a fault / row 6
        }
        int r = view.populate(l.hva(), geometry.pageSize(), true);
        if (r != 0) return l.write() ? null : resolvePfn(l, pfn, flags, false, Path.FAST);         // the slow step reports why
        if (view.entry(l.hva()) != raw) return null;                                               // the kernel did fault
        return resolvePfn(l, pfn, flags, true, Path.FAST);                                         // rows 7 and 10
    }

    /**
     * {@code hva_to_pfn_slow()}, rows 9-12: get_user_pages_unlocked (FOLL_HWPOISON | flags) is
     * MADV_POPULATE_READ/WRITE, then pagemap again; a read fault with mapWritable is upgraded when the pte
     * looks writable and the kernel confirms it (row 10). Null when GUP failed in a way that sends KVM to the
     * VMA.
     */
    private FollowPfnResult hvaToPfnSlow(Lookup l) {
        final long page = geometry.pageSize();
        for (int attempt = 0; ; attempt++) {
            int r = view.populate(l.hva(), page, l.write());                                          // row 9
            if (r == -Errno.EHWPOISON.number) return l.fail(PfnError.HWPOISON, Path.SLOW);             // row 11
            if (r == -Errno.EINTR.number || r == -Errno.EAGAIN.number) return l.fail(PfnError.SIGPENDING, Path.SLOW); // row 12
            if (r != 0) return null;                                                                   // GUP failed: the VMA decides
            long raw = view.entry(l.hva());
            if (!PagemapEntry.isPresent(raw)) {
                // Unmapped again between the populate and the read (reclaim, a racing DONTNEED): try again.
                if (attempt < POPULATE_RETRIES) continue;
                return l.fail(PfnError.FAULT, Path.SLOW);
            }
            long pfn = view.pfnOf(raw);
            long flags = view.flags(pfn);
            if (poison.isPoisoned(pfn, flags)) return l.fail(PfnError.HWPOISON, Path.SLOW);            // row 11
            boolean writable = l.write();
            if (!writable && l.mapWritable() && looksWritable(raw, flags) && view.populate(l.hva(), page, true) == 0) { // row 10
                long raw2 = view.entry(l.hva());
                if (PagemapEntry.isPresent(raw2)) {
                    writable = true;
                    if (view.pfnOf(raw2) != pfn) { // the kernel did have to fault: report what it mapped
                        pfn = view.pfnOf(raw2);
                        flags = view.flags(pfn);
                    }
                }
            }
            return resolvePfn(l, pfn, flags, writable, Path.SLOW);
        }
    }

    /**
     * {@code kvm_resolve_pfn()} for a page GUP gave: the page as kpageflags classifies it and a reference on it
     * (refcounted under both the v9 and the 6.13 rule).
     */
    private FollowPfnResult resolvePfn(Lookup l, long pfn, long flags, boolean writable, Path path) {
        boolean hidden = pfn == PagemapEntry.PFN_HIDDEN;
        RefcountedPage pg = hidden
                ? new RefcountedPage(KvmPfn.HIDDEN, RefcountedPage.Kind.NOT_OBSERVED, RefcountedPage.UNKNOWN_FLAGS)
                : RefcountedPage.of(pfn, flags);
        PageReference ref = references.acquire(l.slot(), l.gfn(), pg, "follow_pfn", l.req().guest());
        MappingLevel level = l.req().wantLevel() ? levels.hostMappingLevel(l.hva()) : null;
        return new FollowPfnResult(l.slot().addressSpace(), l.slot().id(), l.gfn(), l.hva(), pg.pfn(), null,
                hidden ? PfnObservability.HIDDEN : PfnObservability.VISIBLE, writable, pg, ref, level, l.seq(), path, null);
    }

    /** Rows 13-16: GUP failed, so KVM looks at the VMA ({@code vma_lookup} under mmap_read_lock). */
    private FollowPfnResult vmaLookup(Lookup l) {
        Vma vma = view.vma(l.hva());
        if (vma == null) return l.fail(PfnError.FAULT, Path.VMA);                                     // row 13
        if (vma.has(VmFlag.PFNMAP) || vma.has(VmFlag.IO)) return hvaToPfnRemapped(l, vma);           // row 14
        if (l.req().noWait() && vmaIsValid(vma, l.write())) return l.fail(PfnError.NEEDS_IO, Path.VMA); // row 15
        return l.fail(PfnError.FAULT, Path.VMA);                                                      // row 16
    }

    /**
     * {@code hva_to_pfn_remapped()}, rows 17-21, under the rule fixed at construction ({@link KernelRule}; the
     * decisions themselves: {@link #remappedDecision(KernelRule, boolean, boolean, boolean, boolean, boolean,
     * boolean, Refcount)}, pure). Under the v9 rule a pfn whose struct page is refcounted holds a reference, as
     * {@code kvm_follow_refcounted_pfn} does; the pfn itself stays unobservable.
     */
    private FollowPfnResult hvaToPfnRemapped(Lookup l, Vma vma) {
        boolean pteWritable = vma.perms().length() > 1 && vma.perms().charAt(1) == 'w';
        KernelRule rule = options.rule();
        // The pfn is hidden from every reader; what its struct page is comes from the mapping's owner
        // (RemappedPages) under v9, and does not matter under 6.13 (nothing remapped is refcounted there).
        Refcount rc = rule == KernelRule.V9_PATCH ? RemappedPages.v9Refcount(vma)
                : RefcountedPage.linux613Rule(RefcountedPage.Kind.NOT_OBSERVED, RefcountedPage.Path.REMAPPED);
        FollowPfnRequest req = l.req();
        PfnError e = remappedDecision(rule, req.pin(), req.guardedByMmuNotifier(), options.allowUnsafeMappings(),
                req.allowNonRefcountedStructPage(), req.write(), pteWritable, rc);
        if (e != null) return l.fail(e, Path.REMAPPED);
        RefcountedPage pg = new RefcountedPage(KvmPfn.NOT_OBSERVABLE, RefcountedPage.Kind.NOT_OBSERVED,
                RefcountedPage.UNKNOWN_FLAGS);
        // v9: success on a refcountable struct page means get_page_unless_zero took a reference (not on the
        // RO_FAULT branch, which is an error here anyway).
        PageReference ref = rule == KernelRule.V9_PATCH && rc.refcounted()
                ? references.acquire(l.slot(), l.gfn(), pg, "follow_pfn", req.guest()) : null;
        return new FollowPfnResult(l.slot().addressSpace(), l.slot().id(), l.gfn(), l.hva(), KvmPfn.NOT_OBSERVABLE, null,
                PfnObservability.NOT_OBSERVABLE, pteWritable, pg, ref,
                req.wantLevel() ? MappingLevel.PAGE : null, l.seq(), Path.REMAPPED, null);
    }

    /** Rows 17-21 under {@code rule}: the error, or null for success. Pure. */
    public static PfnError remappedDecision(KernelRule rule, boolean pin, boolean guarded, boolean allowUnsafe,
                                            boolean allowNonRefcounted, boolean write, boolean pteWritable,
                                            Refcount refcount) {
        return switch (rule) {
            case V9_PATCH -> remappedDecisionV9Patch(guarded && !pin, allowUnsafe, allowNonRefcounted, write,
                    pteWritable, refcount);
            case LINUX_6_13 -> remappedDecision(pin, guarded, allowUnsafe, allowNonRefcounted, write, pteWritable,
                    refcount);
        };
    }

    /**
     * Rows 17-21 under {@link KernelRule#LINUX_6_13}: {@code hva_to_pfn_remapped()} of 6.13 (the pin row, then
     * RO_FAULT) with v9's checks at its {@code out:} label for a request that sets v9's flags. Returns the error,
     * or null for success. Pure.
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

    /**
     * Rows 18-21 under {@link KernelRule#V9_PATCH}, in the patch's order: {@code kvm_pfn_to_refcounted_page}
     * first ({@code refcount != NO_PAGE}: there is a page), then the RO_FAULT branch, which jumps to {@code out:}
     * <em>before</em> {@code get_page_unless_zero}, so the page is not refcounted there; at {@code out:} a page
     * that is not refcounted is -EFAULT unless {@code allow_non_refcounted_struct_page}, and a pfn that is not
     * refcounted needs the MMU notifier guard or {@code allow_unsafe_mappings}; only then is RO_FAULT returned.
     * {@code guarded} is {@code guarded_by_mmu_notifier} (the patch has no FOLL_PIN). Pure.
     */
    public static PfnError remappedDecisionV9Patch(boolean guarded, boolean allowUnsafe, boolean allowNonRefcounted,
                                                   boolean write, boolean pteWritable, Refcount refcount) {
        boolean page = refcount != Refcount.NO_PAGE;
        PfnError pfn = null;
        boolean refcounted = false;
        if (write && !pteWritable) pfn = PfnError.RO_FAULT;                                // goto out
        else refcounted = refcount.refcounted();                                           // get_page_unless_zero
        if (page && !refcounted && !allowNonRefcounted) return PfnError.FAULT;             // 19 (out:)
        if (!refcounted && !guarded && !allowUnsafe) return PfnError.FAULT;                // 20
        return pfn;                                                                        // 18 / 21
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
        privatePages.put(ref.slot(), ref.gfn(), ref.guest());
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
