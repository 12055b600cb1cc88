package io.guestmem.snapshot;

import io.guestmem.access.PageAccessPolicy;
import io.guestmem.memslot.Memslot;
import java.util.Collection;

/**
 * The host accessors' policy over memory being restored on demand: before an accessor touches a page of a
 * governed slot, the page's block is brought in on the calling thread. (A JVM thread must not block in a page
 * fault while in Java code: the fault handler may be Java too, and a safepoint would wait for both; so the block
 * arrives first, served directly or faulted in from native code.) Once the restore is complete every access is
 * allowed at once. Created before the memory's slots exist, so their layout sees them governed from the start.
 */
public final class RestorePolicy implements PageAccessPolicy {
    /** Brings in the block of a page of a governed slot; throws {@link LazyRestoreException} when it cannot. */
    @FunctionalInterface
    public interface Fetcher {
        void bringIn(int slotId, long gfn, boolean write);
    }

    private final boolean[] governed; // by memslot id, address space 0
    private volatile Fetcher fetcher;
    private volatile boolean complete;

    public RestorePolicy(Collection<Integer> slotIds) {
        int max = -1;
        for (int id : slotIds) max = Math.max(max, id);
        governed = new boolean[max + 1];
        for (int id : slotIds) governed[id] = true;
    }

    /** From now on, accesses to pages not yet restored go through {@code f}. */
    public void attach(Fetcher f) {
        fetcher = f;
    }

    /** Every page is in place: accesses go straight through. */
    public void complete() {
        complete = true;
    }

    public boolean isComplete() {
        return complete;
    }

    @Override
    public boolean governs(Memslot slot) {
        return slot.addressSpace() == 0 && slot.id() < governed.length && governed[slot.id()];
    }

    @Override
    public boolean mayAccess(Memslot slot, long gfn, boolean write) {
        if (complete) return true;
        Fetcher f = fetcher;
        if (f == null) throw new LazyRestoreException("slot " + slot.id() + " is being restored and nothing serves it yet", null);
        f.bringIn(slot.id(), gfn, write);
        return true;
    }
}
