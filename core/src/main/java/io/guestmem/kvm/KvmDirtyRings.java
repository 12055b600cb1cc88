package io.guestmem.kvm;

import io.guestmem.KvmException;
import io.guestmem.kvmapi.KvmDirtyRing;
import io.guestmem.kvmapi.KvmIoctls;
import io.guestmem.memslot.Memslot;
import io.guestmem.sys.Errno;
import io.guestmem.sys.UseAfterClose;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.Map;
import java.util.TreeSet;

/**
 * The per-vCPU dirty rings of a VM opened with {@link KvmVm.Options#withDirtyRing}: {@link #harvest()} reads
 * every entry KVM published (flags DIRTY), hands them back (RESET) and calls KVM_RESET_DIRTY_RINGS, which
 * write-protects those pages again. Entries are per write KVM logged, not per page, so one page can appear
 * several times; {@link #rawEntries()} counts them. Harvest from the thread that runs the vCPUs, between runs.
 */
public final class KvmDirtyRings {
    private final KvmVm vm;
    private final Map<Vcpu, Integer> fetchIndex = new IdentityHashMap<>();
    private final Map<Integer, TreeSet<Long>> pending = new HashMap<>();
    private long rawEntries;

    public KvmDirtyRings(KvmVm vm) {
        if (vm.dirtyRingBytes() == 0)
            throw new KvmException(Errno.ENXIO, "KVM dirty ring", "the VM was opened without KVM_CAP_DIRTY_LOG_RING");
        this.vm = vm;
    }

    /** Pulls every published entry of every vCPU's ring into per-slot sets; returns the entries read. */
    public synchronized int harvest() {
        int n = 0;
        for (Vcpu v : vm.vcpus()) {
            KvmDirtyRing ring = v.dirtyRing();
            int i = fetchIndex.getOrDefault(v, 0);
            while ((ring.flagsAcquire(i) & KvmIoctls.KVM_DIRTY_GFN_F_DIRTY) != 0) {
                pending.computeIfAbsent(ring.slot(i), k -> new TreeSet<>()).add(ring.offset(i));
                ring.markReset(i);
                i++;
                n++;
            }
            fetchIndex.put(v, i);
        }
        if (n > 0) vm.vmFd().resetDirtyRings();
        rawEntries += n;
        return n;
    }

    /** Ring entries read so far, duplicates included. */
    public synchronized long rawEntries() {
        return rawEntries;
    }

    /** The gfns of {@code slot} harvested since the last call for it (harvesting first). */
    public synchronized long[] collect(Memslot slot) {
        harvest();
        TreeSet<Long> offsets = pending.remove(slot.kvmSlot());
        if (offsets == null) return new long[0];
        return offsets.stream().mapToLong(o -> slot.baseGfn() + o).toArray();
    }

    /** A {@link SlotDirtyTracker} view of one slot. */
    public SlotDirtyTracker forSlot(Memslot slot) {
        if (!slot.logsDirty())
            throw new KvmException(Errno.ENOENT, "KVM dirty ring(slot " + slot.kvmSlot() + ")", "the slot is not LOG_DIRTY_PAGES");
        return new SlotDirtyTracker() {
            private volatile boolean closed;
            @Override public String name() { return "KVM dirty ring"; }
            @Override public Memslot slot() { return slot; }
            @Override public long[] collect() {
                if (closed) throw UseAfterClose.of(name() + " of slot " + slot.id(), "collect()");
                return KvmDirtyRings.this.collect(slot);
            }
            @Override public void close() { closed = true; } // the rings stay: they are the VM's
        };
    }
}
