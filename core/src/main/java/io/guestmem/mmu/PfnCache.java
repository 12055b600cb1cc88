package io.guestmem.mmu;

import io.guestmem.KvmException;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;

/**
 * A gfn → pfn cache (KVM's {@code gfn_to_pfn_cache}, virt/kvm/pfncache.c) for one guest physical range inside
 * one page: {@link #activate} it, test {@link #check()} before each use, {@link #refresh()} when the check fails.
 *
 * <p>{@link #check()} is the hit path: it reads a volatile flag, the cached memslot generation and the current
 * one; it allocates nothing and makes no syscall. The cache is made invalid (and its page reference dropped)
 * by any invalidation that covers its hva or gfn ({@code gfn_to_pfn_cache_invalidate_start}), and goes stale
 * on any memslot change (the generation). {@link #refresh()} is KVM's {@code hva_to_pfn_retry}: it follows the
 * pfn (a write fault; the {@link Rule} says whether guarded) and publishes it only if no invalidation intervened (the
 * rule says which), retrying
 * otherwise; the publication and the invalidation listener serialize on one lock, so an invalidation that
 * starts after the retry check is never lost.
 *
 * <h2>Rules ({@link Rule}, chosen at construction)</h2>
 * Which lookup {@code hva_to_pfn_retry} makes and when it retries differ between the patch the library follows
 * and the kernel: {@link Rule#V9_PATCH} (the patch's cache: not guarded by the MMU notifier, retry on any
 * invalidation), {@link Rule#LINUX_6_13} (6.13's cache) and {@link Rule#LINUX_6_13_GFN_RANGE} (6.13's lookup
 * with the library's narrower retry; the default).
 *
 * <p>While valid, the cache holds one {@link PageReference} on its page (and so a guest_memfd page's state
 * count). Its release may be a deferred conversion's final put, which may thus run inside an invalidation:
 * final-put listeners must not start or end one.
 */
public final class PfnCache implements AutoCloseable {

    /** The lookup and the retry check of {@code hva_to_pfn_retry}, by the kernel (or patch) they follow. */
    public enum Rule {
        /**
         * "KVM: mmu: Improve handling of non-refcounted pfns" (David Stevens, PATCH v9 3/6, 2023,
         * <a href="https://lore.kernel.org/all/?q=s%3A%22Improve+handling+of+non-refcounted+pfns%22">lore</a>):
         * its pfncache hunk builds the {@code kvm_follow_pfn} with FOLL_WRITE and
         * {@code allow_non_refcounted_struct_page = false} and leaves {@code guarded_by_mmu_notifier} false (the
         * default), so a pfn without a refcounted page is refused unless {@code allow_unsafe_mappings}; the loop
         * retries while {@code mmu_notifier_retry_cache} says so: any invalidation in progress
         * ({@code mn_active_invalidate_count}) or a new {@code mmu_invalidate_seq}, whatever range it covers
         * ({@link MmuNotifier#retry}).
         */
        V9_PATCH(false, false),
        /**
         * Linux 6.13's {@code hva_to_pfn_retry} (virt/kvm/pfncache.c): a FOLL_WRITE lookup that does not pin
         * (6.13 has no guarded flag; not pinning is using the pfn under the notifier, so the library's request is
         * guarded), retried on {@code mmu_notifier_retry_cache} as in the patch ({@link MmuNotifier#retry}).
         */
        LINUX_6_13(true, false),
        /**
         * 6.13's lookup, retried only when an invalidation covering the cached gfn is in progress or the
         * sequence moved ({@link MmuNotifier#retryGfn}): the library's narrowing, which never spins on an
         * unrelated invalidation. The default.
         */
        LINUX_6_13_GFN_RANGE(true, true);

        private final boolean guarded, rangeChecked;

        Rule(boolean guarded, boolean rangeChecked) {
            this.guarded = guarded;
            this.rangeChecked = rangeChecked;
        }

        /** Whether the cache's lookup says {@code guarded_by_mmu_notifier}. */
        public boolean guarded() {
            return guarded;
        }

        /** Whether the retry check looks at the cached gfn ({@code retryGfn}) rather than any invalidation. */
        public boolean rangeChecked() {
            return rangeChecked;
        }

        /** The lookup {@code hva_to_pfn_retry} makes for {@code gfn}. */
        public FollowPfnRequest request(long gfn, int addressSpace) {
            return FollowPfnRequest.write(gfn).withAddressSpace(addressSpace).withGuarded(guarded);
        }

        /** The retry check after a lookup that took {@code seq}. */
        public boolean retry(MmuNotifier n, long gfn, long seq) {
            return rangeChecked ? n.retryGfn(gfn, seq) : n.retry(seq);
        }
    }

    private final FollowPfn fp;
    private final Rule rule;
    private final MmuNotifier notifier;
    private final Memslots memslots;
    private final PageGeometry geometry;
    private final int addressSpace;
    private final Object lock = new Object();
    private final Object refreshLock = new Object();
    private final InvalidationListener listener = new InvalidationListener() {
        @Override
        public void invalidateRangeStart(Invalidation inv) {
            onInvalidate(inv);
        }
    };

    // Written under lock; valid is published last (volatile) so the hit path sees consistent fields.
    private volatile boolean valid;
    private volatile boolean active;
    private long gpa, len, gfn, hva = -1, pfn = KvmPfn.ERR_FAULT, generation = -1;
    private boolean writable;
    private PageReference ref;
    private PfnError lastError;
    private boolean closed;
    private volatile long retries;

    /**
     * A cache over {@code fp}'s memslots and notifier for guest addresses of {@code addressSpace}, under
     * {@link Rule#LINUX_6_13_GFN_RANGE}.
     */
    public PfnCache(FollowPfn fp, int addressSpace) {
        this(fp, addressSpace, Rule.LINUX_6_13_GFN_RANGE);
    }

    /** A cache under {@code rule}, fixed for its lifetime. */
    public PfnCache(FollowPfn fp, int addressSpace, Rule rule) {
        this.fp = fp;
        this.rule = java.util.Objects.requireNonNull(rule, "rule");
        this.notifier = fp.notifier();
        this.memslots = notifier.memslots();
        this.geometry = memslots.geometry();
        this.addressSpace = addressSpace;
        notifier.addListener(listener);
    }

    /**
     * {@code kvm_gpc_activate}: caches {@code [gpa, gpa + len)} (within one page) and refreshes it.
     *
     * @return null when the cache is now valid, else the error that prevented it (it stays active; refresh later)
     * @throws KvmException EINVAL when the range crosses a page boundary or is empty
     */
    public PfnError activate(long gpa, long len) {
        if (len <= 0 || geometry.offset(gpa) + len > geometry.pageSize()) {
            throw new KvmException(Errno.EINVAL, "PfnCache.activate(" + Fmt.hex(gpa) + ", " + len + ")",
                    "the range must be non-empty and inside one page");
        }
        synchronized (refreshLock) {
            PageReference drop;
            synchronized (lock) {
                if (closed) throw new IllegalStateException("PfnCache is closed");
                this.gpa = gpa;
                this.len = len;
                this.gfn = geometry.frame(gpa);
                active = true;
                drop = invalidateLocked();
            }
            if (drop != null) fp.release(drop, true, false);
            return refresh();
        }
    }

    /**
     * {@code kvm_gpc_check}: true when the cached pfn may be used now. Allocation-free, no syscall. Like KVM's,
     * the answer holds while no invalidation starts; a caller that needs more registers its own listener.
     */
    public boolean check() {
        return valid && generation == memslots.current(addressSpace).generation();
    }

    /** {@code kvm_gpc_refresh}: follows the pfn again. Returns null on success, else the error (cache invalid). */
    public PfnError refresh() {
        synchronized (refreshLock) {
            if (!active) throw new IllegalStateException("PfnCache is not active");
            while (true) {
                long gen = memslots.current(addressSpace).generation();
                FollowPfnResult r = fp.follow(rule.request(gfn, addressSpace));
                PageReference old;
                synchronized (lock) {
                    if (r.isError()) {
                        old = invalidateLocked();
                        lastError = r.error();
                        hva = r.hva();
                        pfn = r.pfn();
                        if (old != null) fp.release(old, true, false);
                        return r.error();
                    }
                    if (rule.retry(notifier, gfn, r.sequence()) || !active) {
                        old = null;
                    } else {
                        old = ref;
                        ref = r.reference();
                        hva = r.hva() + geometry.offset(gpa);
                        pfn = r.pfn();
                        writable = r.writable();
                        generation = gen;
                        lastError = null;
                        valid = true;
                        if (old != null) fp.release(old, true, false);
                        return null;
                    }
                }
                // raced with an invalidation: drop what we took and follow again (KVM: cond_resched)
                fp.releaseFaultinPage(r, true, false);
                if (!active) return PfnError.FAULT;
                retries++;
                Thread.yield();
            }
        }
    }

    /** {@code kvm_gpc_deactivate}: invalid and inactive; the reference is dropped. */
    public void deactivate() {
        PageReference drop;
        synchronized (lock) {
            active = false;
            drop = invalidateLocked();
        }
        if (drop != null) fp.release(drop, true, false);
    }

    private PageReference invalidateLocked() {
        valid = false;
        PageReference r = ref;
        ref = null;
        return r;
    }

    private void onInvalidate(Invalidation inv) {
        if (!active) return;
        PageReference drop = null;
        synchronized (lock) {
            if (!valid) return;
            boolean hit = inv.hasHvaRange() && hva >= inv.hvaStart() && hva < inv.hvaEnd();
            for (Invalidation.GfnRange g : inv.ranges()) {
                if (g.addressSpace() == addressSpace && gfn >= g.start() && gfn < g.end()) hit = true;
            }
            if (hit) drop = invalidateLocked();
        }
        if (drop != null) fp.release(drop, true, false);
    }

    /** The rule fixed at construction. */
    public Rule rule() {
        return rule;
    }

    /** How many lookups {@link #refresh} has thrown away because the retry check said so (tests, diagnostics). */
    public long retries() {
        return retries;
    }

    /** The cached pfn (meaningful after {@link #check()} returned true). */
    public long pfn() {
        return pfn;
    }

    /** The host address of the cached gpa (page offset included). */
    public long hva() {
        return hva;
    }

    public long gpa() {
        return gpa;
    }

    public long length() {
        return len;
    }

    public boolean writable() {
        return writable;
    }

    public boolean isActive() {
        return active;
    }

    /** The error of the last failed refresh, null after a successful one. */
    public PfnError lastError() {
        synchronized (lock) {
            return lastError;
        }
    }

    /** Deactivates and detaches from the notifier. */
    @Override
    public void close() {
        deactivate();
        synchronized (lock) {
            closed = true;
        }
        notifier.removeListener(listener);
    }
}
