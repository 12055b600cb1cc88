package io.guestmem.vm;

import io.guestmem.KvmException;
import io.guestmem.access.GuestMemory;
import io.guestmem.access.GuestMemoryException;
import io.guestmem.access.PageAccessPolicy;
import io.guestmem.gmem.GuestMemfdPages;
import io.guestmem.gmem.GuestMemfdRegion;
import io.guestmem.kvm.KvmVm;
import io.guestmem.lock.MemslotLock;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotObserver;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.DirtyLog;
import io.guestmem.mmu.FollowPfn;
import io.guestmem.mmu.FollowPfnCollaborators;
import io.guestmem.mmu.FollowPfnOptions;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.mmu.PoisonRegistry;
import io.guestmem.sys.Errno;
import io.guestmem.sys.UseAfterClose;

/**
 * The guest memory of one VM with its pieces connected, so a VMM gets one behaviour:
 * <ul>
 *   <li>locked slots ({@link MemslotLock}) map at 4K only in {@link FollowPfn#levels()}, and a write fault
 *       through follow_pfn relaxes a READ lock's stage-2 entry ({@link MemslotLock#relaxWrite});</li>
 *   <li>guest_memfd mappability ({@link GuestMemfdPages}) is follow_pfn's FOLL_GUEST rule and
 *       {@link GuestMemory}'s access policy (a private page is a typed error, never a SIGBUS); each follow_pfn
 *       reference is a guest_memfd page reference, so its release is the final put of a deferred conversion;</li>
 *   <li>one {@link PoisonRegistry} answers follow_pfn's HWPOISON (marks and the kernel's bit);</li>
 *   <li>follow_pfn's dirty releases and the unlock of a READ_WRITE-locked logging slot mark
 *       {@link GuestMemory}'s dirty bitmap, so {@code collectDirty}/{@code pagesToSend} see them.</li>
 * </ul>
 * With a {@link KvmVm} the memslots are validated as that KVM does and mirrored into it. Closing closes what
 * this built, in reverse order (not the VM, not guest_memfd regions added).
 */
public final class VmMemory implements AutoCloseable {
    private final Memslots memslots;
    private final MemslotObserver vmObserver; // null without a VM
    private final KvmVm vm;                   // null without a VM
    private final MmuNotifier notifier;
    private final FollowPfn followPfn;
    private final MemslotLock lock;
    private final GuestMemory memory;
    private final GuestMemfdPages guestMemfdPages;
    private final PoisonRegistry poison = new PoisonRegistry();
    private volatile boolean closed;

    /** Guest memory without KVM (the library's own memslot rules, default configuration). */
    public VmMemory() {
        this(null);
    }

    /** Guest memory mirrored into {@code vm} (null: no VM), follow_pfn with {@link FollowPfnOptions#defaults()}. */
    public VmMemory(KvmVm vm) {
        this(vm, FollowPfnOptions.defaults());
    }

    /**
     * Guest memory mirrored into {@code vm} (null: no VM), follow_pfn under {@code followPfnOptions} (the kernel
     * rule and {@code allow_unsafe_mappings}, fixed for this VM as KVM fixes its module parameters at load).
     */
    public VmMemory(KvmVm vm, FollowPfnOptions followPfnOptions) {
        this(vm, followPfnOptions, PageAccessPolicy.ALLOW_ALL);
    }

    /**
     * As {@link #VmMemory(KvmVm, FollowPfnOptions)}, with {@code hostAccess} asked by the accessors too, after
     * the guest_memfd rules, about the slots it governs (a lazy restore's: a page not yet restored is brought
     * in before the access touches it).
     */
    public VmMemory(KvmVm vm, FollowPfnOptions followPfnOptions, PageAccessPolicy hostAccess) {
        this.vm = vm;
        memslots = vm == null ? new Memslots() : new Memslots(vm.memslotsConfig());
        vmObserver = vm == null ? null : vm.memslotObserver();
        if (vmObserver != null) memslots.addObserver(vmObserver);
        notifier = new MmuNotifier(memslots);
        // Each part gets the others it needs when it is built (nothing is plugged in later):
        // private memory: one state machine for follow_pfn, its references and the accessors' policy;
        guestMemfdPages = new GuestMemfdPages(memslots);
        memory = new GuestMemory(memslots, 0, PageAccessPolicy.both(guestMemfdPages, hostAccess));
        // dirty: both sources (dirty releases, unlock of a READ_WRITE-locked logging slot) feed the VMM's bitmap;
        DirtyLog dirty = this::markDirty;
        lock = new MemslotLock(notifier, dirty);
        // locked slots map base pages only, and write faults relax READ-locked stage-2 entries.
        followPfn = new FollowPfn(notifier, new FollowPfnCollaborators(guestMemfdPages, poison, lock, lock, dirty),
                followPfnOptions);
    }

    private void markDirty(Memslot slot, long firstGfn, long npages) {
        if (slot.addressSpace() != memory.addressSpace()) return;
        int shift = memslots.geometry().shift();
        try {
            memory.markDirty(firstGfn << shift, npages << shift);
        } catch (GuestMemoryException e) {
            // A slot GuestMemory has no host memory for: nothing of it can be collected or sent.
        }
    }

    /**
     * A guest_memfd region of {@code size} bytes for this VM (a stand-in memfd without one, or without
     * KVM_CAP_GUEST_MEMFD), behind this memory's notifier, ready for {@link #addGuestMemfd}. The caller owns it.
     */
    public GuestMemfdRegion createGuestMemfd(long size) {
        if (closed) throw UseAfterClose.of("VmMemory", "createGuestMemfd()");
        return GuestMemfdRegion.create(vm, size, notifier);
    }

    /**
     * Binds {@code region} as slot {@code slotId} at {@code gpa} (a GUEST_MEMFD slot, or a plain one for a
     * stand-in): its mappability, references and conversions join follow_pfn and the accessors. The region
     * must have been created behind this memory's notifier ({@link #createGuestMemfd}, or
     * {@code GuestMemfdRegion.create(vm, size, notifier())}): one behind no notifier or another would convert
     * pages without invalidating this VM's translations, so it is refused with EINVAL.
     */
    public Memslot addGuestMemfd(int slotId, long gpa, GuestMemfdRegion region) {
        if (closed) throw UseAfterClose.of("VmMemory", "addGuestMemfd()");
        if (region.notifier() != notifier)
            throw new KvmException(Errno.EINVAL, "addGuestMemfd(slot " + slotId + ")", region.notifier() == null
                    ? "the region was created behind no notifier: create it with createGuestMemfd(size)"
                    : "the region is behind another VM's notifier");
        guestMemfdPages.register(region);
        if (region.hostMapped()) memory.register(region.hostRegion());
        Memslot m = region.memslot(memory.addressSpace(), slotId, gpa);
        memslots.setMemslot(m.addressSpace(), m.id(), m.flags(), gpa, m.npages() * memslots.geometry().pageSize(),
                m.userspaceAddr(), m.gmemFd(), m.gmemOffset());
        return memslots.current(m.addressSpace()).byId(slotId);
    }

    public Memslots memslots() { return memslots; }
    public MmuNotifier notifier() { return notifier; }
    public FollowPfn followPfn() { return followPfn; }
    public MemslotLock lock() { return lock; }
    public GuestMemory memory() { return memory; }
    public GuestMemfdPages guestMemfdPages() { return guestMemfdPages; }
    public PoisonRegistry poison() { return poison; }

    /** Closes accessors, lock and follow_pfn in reverse order and detaches from the VM. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        memory.close();
        lock.close();
        followPfn.close();
        if (vmObserver != null) memslots.removeObserver(vmObserver);
    }
}
