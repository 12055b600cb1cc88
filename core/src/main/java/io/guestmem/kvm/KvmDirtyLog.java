package io.guestmem.kvm;

import io.guestmem.KvmException;
import io.guestmem.memslot.Memslot;
import io.guestmem.sys.Errno;
import io.guestmem.sys.UseAfterClose;
import java.util.Arrays;

/**
 * KVM's bitmap dirty log of one LOG_DIRTY_PAGES slot: KVM_GET_DIRTY_LOG returns the pages the guest wrote
 * since the last call and (without manual protection) clears the log and write-protects them again in the
 * same call. It records writes made by the guest through KVM only; host writes to the slot's memory are
 * not logged (the library's own accessors keep their own bitmap).
 */
public final class KvmDirtyLog implements SlotDirtyTracker {
    private final KvmVm vm;
    private final Memslot slot;
    private volatile boolean closed;

    private KvmDirtyLog(KvmVm vm, Memslot slot) {
        this.vm = vm;
        this.slot = slot;
    }

    /** The log of {@code slot}, which must be mirrored into {@code vm} with {@link Memslot#LOG_DIRTY_PAGES}. */
    public static KvmDirtyLog of(KvmVm vm, Memslot slot) {
        String op = "KVM_GET_DIRTY_LOG(slot " + slot.kvmSlot() + ")";
        if (vm.dirtyRingBytes() > 0)
            throw new KvmException(Errno.ENXIO, op, "this VM logs dirty pages in a dirty ring, not a bitmap");
        if (!slot.logsDirty()) throw new KvmException(Errno.ENOENT, op, "the slot is not LOG_DIRTY_PAGES");
        Memslot mirrored = vm.mirroredSlots().get(slot.kvmSlot());
        if (!slot.equals(mirrored)) throw new KvmException(Errno.ENOENT, op, "KVM has " + mirrored + ", not " + slot);
        return new KvmDirtyLog(vm, slot);
    }

    @Override
    public String name() {
        return "KVM_GET_DIRTY_LOG";
    }

    @Override
    public Memslot slot() {
        return slot;
    }

    /** The raw bitmap of KVM_GET_DIRTY_LOG: bit i of word i/64 is page i of the slot. */
    public long[] bitmap() {
        if (closed) throw UseAfterClose.of("dirty log of slot " + slot.id(), "bitmap()");
        return vm.vmFd().getDirtyLog(slot.kvmSlot(), slot.npages());
    }

    @Override
    public long[] collect() {
        return gfns(slot, bitmap());
    }

    /** The gfns of the bits set in {@code bitmap}, relative to {@code slot}. */
    static long[] gfns(Memslot slot, long[] bitmap) {
        long[] out = new long[16];
        int n = 0;
        for (int w = 0; w < bitmap.length; w++) {
            long bits = bitmap[w];
            while (bits != 0) {
                long page = w * 64L + Long.numberOfTrailingZeros(bits);
                bits &= bits - 1;
                if (page >= slot.npages()) break;
                if (n == out.length) out = Arrays.copyOf(out, n * 2);
                out[n++] = slot.baseGfn() + page;
            }
        }
        return Arrays.copyOf(out, n);
    }

    @Override
    public void close() {
        closed = true;
    }
}
