package io.guestmem.gmem;

import io.guestmem.mmu.FollGuest;
import io.guestmem.mmu.Mappability;

import java.util.concurrent.atomic.AtomicLongArray;

/**
 * The shared/private state machine of a guest_memfd's pages, as the guest_memfd mappability series describes
 * it: each page's {@link Mappability}, the references the library holds on it, and the conversion that waits
 * for the last of them (the series' final {@code folio_put} callback, {@code kvm_gmem_handle_folio_put}).
 * Pure: no file, no mapping, no syscall. {@link GuestMemfdRegion} owns one over its guest_memfd and does the
 * syscalls around it (the host-mapping check before a conversion, the zaps, the notifier's invalidation).
 *
 * <h2>The per-page state word</h2>
 * One {@code long} per page in an {@link AtomicLongArray}: bits 0-1 the mappability, bits 2-3 the target of a
 * pending conversion (meaningful in {@link Mappability#NONE}), bits 32-62 the number of references the library
 * holds on the page (follow_pfn results not yet released, pfn caches, an accessor in the middle of a copy).
 * References belong to the view they were taken in: shared ({@code guest=false}) in {@code ALL}, private
 * ({@code guest=true}) in {@code GUEST}, as {@link FollGuest#view} rules; a {@code NONE} page still carries
 * those of the view it is leaving.
 *
 * <h2>Linearization</h2>
 * Every per-page event is one successful CAS of that page's word: taking a reference (only in the view the
 * page is in), releasing one, and converting. A conversion of a page with no reference goes straight to its
 * target; with references it goes to {@code NONE} (no new reference can be taken from that CAS on), and the CAS
 * that drops the last reference also sets the target: the final put. So a reference taken concurrently with a
 * conversion is either ordered before the conversion's CAS (and defers it) or after (and is refused); none is
 * lost. Callers serialize conversions of overlapping ranges among themselves (the region holds a lock);
 * reference operations never lock. Queries and reference operations allocate nothing.
 */
public final class PageStates {

    /** Hears a deferred conversion finish, on the thread that released the last reference, after the CAS. */
    @FunctionalInterface
    public interface FinalPut {
        void conversionFinished(long page, Mappability now);
    }

    private static final long M_MASK = 3;
    private static final int T_SHIFT = 2;
    private static final long T_MASK = 3L << T_SHIFT;
    private static final int R_SHIFT = 32;
    private static final long ONE_REF = 1L << R_SHIFT;
    private static final long MAX_REFS = (1L << 31) - 1;

    private static final int ALL = Mappability.ALL.ordinal();
    private static final int NONE = Mappability.NONE.ordinal();
    private static final int GUEST = Mappability.GUEST.ordinal();

    private final AtomicLongArray state;
    private final int shift;
    private final FinalPut finalPut;

    /**
     * {@code pages} pages of {@code 1 << pageShift} bytes, all {@code initial}, none referenced; {@code finalPut}
     * hears each deferred conversion finish.
     */
    public PageStates(long pages, int pageShift, Mappability initial, FinalPut finalPut) {
        if (initial == Mappability.NONE) throw new IllegalArgumentException("a page starts shared or private, not converting");
        this.state = new AtomicLongArray(Math.toIntExact(pages));
        this.shift = pageShift;
        this.finalPut = finalPut;
        if (initial != Mappability.ALL) for (int i = 0; i < state.length(); i++) state.set(i, initial.ordinal());
    }

    public long pages() {
        return state.length();
    }

    // ------------------------------------------------------------------ queries

    /** The mappability of page {@code page}. */
    public Mappability mappability(long page) {
        return Mappability.of((int) (state.get(index(page)) & M_MASK));
    }

    /** The target of the pending conversion of a {@link Mappability#NONE} page, else null. */
    public Mappability pendingTarget(long page) {
        long w = state.get(index(page));
        return (w & M_MASK) == NONE ? Mappability.of((int) ((w & T_MASK) >>> T_SHIFT)) : null;
    }

    /** How many references the library holds on page {@code page}. */
    public long references(long page) {
        return state.get(index(page)) >>> R_SHIFT;
    }

    // ------------------------------------------------------------------ references

    /**
     * Takes a reference on {@code page} in the view {@code guest} asks for ({@link FollGuest#view}: FOLL_GUEST
     * takes private pages only, a lookup without it shared pages only, and nobody a converting page). False, and
     * nothing taken, when the page is not in that view. One CAS.
     */
    public boolean tryGet(long page, boolean guest) {
        int i = index(page);
        for (;;) {
            long w = state.get(i);
            if (!FollGuest.view(Mappability.of((int) (w & M_MASK)), guest).ok()) return false;
            if ((w >>> R_SHIFT) >= MAX_REFS) throw new IllegalStateException("reference count of page " + page + " overflows");
            if (state.compareAndSet(i, w, w + ONE_REF)) return true;
        }
    }

    /**
     * Releases a reference taken by {@link #tryGet} with the same {@code guest}. If it is the last one on a
     * {@link Mappability#NONE} page, the pending conversion finishes in this CAS (the final put) and
     * {@link FinalPut} hears of it on this thread. A put without a reference in that view is a bug: it throws.
     */
    public void put(long page, boolean guest) {
        int i = index(page);
        for (;;) {
            long w = state.get(i);
            long refs = w >>> R_SHIFT;
            int m = (int) (w & M_MASK), t = (int) ((w & T_MASK) >>> T_SHIFT);
            boolean guestView = m == GUEST || (m == NONE && t == ALL); // the view the references were taken in
            if (refs == 0 || guestView != guest)
                throw new IllegalStateException("put of a " + (guest ? "private" : "shared") + " reference on page "
                        + page + " that holds none (" + Mappability.of(m) + ", " + refs + " references)");
            boolean last = m == NONE && refs == 1;
            long next = last ? t : w - ONE_REF; // the final put: mappability = target, no target, no references
            if (state.compareAndSet(i, w, next)) {
                if (last) finalPut.conversionFinished(page, Mappability.of(t));
                return;
            }
        }
    }

    // ------------------------------------------------------------------ conversions

    /**
     * Converts the pages of {@code [offset, offset + length)} (page-aligned bytes) to {@code target}
     * ({@link Mappability#ALL} or {@link Mappability#GUEST}): a page with no reference reaches it at once, a page
     * with references in the other view goes {@link Mappability#NONE} until its final put, a page already on its
     * way there stays pending, and a page waiting to go the other way returns to {@code target} at once (its
     * references are of that view).
     */
    public Conversion convert(long offset, long length, Mappability target) {
        if (target == Mappability.NONE) throw new IllegalArgumentException("NONE is no conversion target");
        int from = index(offset >>> shift), to = Math.toIntExact((offset + length) >>> shift);
        if (to > state.length() || to < from) throw new IndexOutOfBoundsException("pages [" + from + ", " + to + ") outside " + state.length());
        int tgt = target.ordinal();
        long completed = 0, pending = 0, firstPending = -1;
        for (int i = from; i < to; i++) {
            for (;;) {
                long w = state.get(i);
                int m = (int) (w & M_MASK), t = (int) ((w & T_MASK) >>> T_SHIFT);
                long next;
                boolean isPending;
                if (m == tgt) {
                    next = w;
                    isPending = false;
                } else if (m == NONE && t == tgt) {
                    next = w;                               // already on its way
                    isPending = true;
                } else if (m == NONE) {
                    next = (w & ~(M_MASK | T_MASK)) | tgt;  // back to where its references came from
                    isPending = false;
                } else if ((w >>> R_SHIFT) == 0) {
                    next = tgt;
                    isPending = false;
                } else {
                    next = (w & ~(M_MASK | T_MASK)) | NONE | ((long) tgt << T_SHIFT); // defer to the final put
                    isPending = true;
                }
                if (next == w || state.compareAndSet(i, w, next)) {
                    if (isPending) {
                        pending++;
                        if (firstPending < 0) firstPending = (long) i << shift;
                    } else {
                        completed++;
                    }
                    break;
                }
            }
        }
        return new Conversion(offset, length, target, completed, pending, firstPending);
    }

    private int index(long page) {
        if (page < 0 || page >= state.length())
            throw new IndexOutOfBoundsException("page " + page + " outside the " + state.length() + "-page guest_memfd");
        return (int) page;
    }
}
