package io.guestmem.kvmapi;

import static io.guestmem.kvmapi.KvmLayouts.DIRTY_GFN;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * One vCPU's mmap'd dirty ring: an array of {@code struct kvm_dirty_gfn}. KVM publishes an entry by setting
 * its {@code flags} to DIRTY (release); userspace reads it after an acquire load, then hands it back by
 * setting RESET (release) and calling KVM_RESET_DIRTY_RINGS. The harvesting index lives with the caller.
 */
public final class KvmDirtyRing {
    private static final long ENTRY = DIRTY_GFN.byteSize();
    private static final long FLAGS = KvmLayouts.offset(DIRTY_GFN, "flags");
    private static final long SLOT = KvmLayouts.offset(DIRTY_GFN, "slot");
    private static final long OFFSET = KvmLayouts.offset(DIRTY_GFN, "offset");
    private static final VarHandle INT = ValueLayout.JAVA_INT.varHandle();

    private final MemorySegment seg;
    private final VcpuFd owner;
    private final int entries;

    KvmDirtyRing(MemorySegment seg, VcpuFd owner) {
        this.seg = seg;
        this.owner = owner;
        this.entries = (int) (seg.byteSize() / ENTRY);
    }

    public int entries() {
        return entries;
    }

    /** The entry's flags with acquire semantics (pairs with KVM's release store). */
    public int flagsAcquire(int index) {
        owner.checkOpen("dirty ring flagsAcquire()");
        return (int) INT.getAcquire(seg, index(index) + FLAGS);
    }

    /** The entry's slot id ({@code as_id << 16 | id}); read only after {@link #flagsAcquire} saw DIRTY. */
    public int slot(int index) {
        owner.checkOpen("dirty ring slot()");
        return seg.get(ValueLayout.JAVA_INT, index(index) + SLOT);
    }

    /** The page offset inside the slot; read only after {@link #flagsAcquire} saw DIRTY. */
    public long offset(int index) {
        owner.checkOpen("dirty ring offset()");
        return seg.get(ValueLayout.JAVA_LONG, index(index) + OFFSET);
    }

    /** Hands the entry back to KVM (flags = RESET, release); KVM_RESET_DIRTY_RINGS then recycles it. */
    public void markReset(int index) {
        owner.checkOpen("dirty ring markReset()");
        INT.setRelease(seg, index(index) + FLAGS, KvmIoctls.KVM_DIRTY_GFN_F_RESET);
    }

    private long index(int index) {
        return (long) Integer.remainderUnsigned(index, entries) * ENTRY;
    }
}
