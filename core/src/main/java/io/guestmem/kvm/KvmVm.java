package io.guestmem.kvm;

import io.guestmem.KvmException;
import io.guestmem.kvmapi.KvmCap;
import io.guestmem.kvmapi.KvmDevice;
import io.guestmem.kvmapi.KvmDirtyRing;
import io.guestmem.kvmapi.KvmIoctls;
import io.guestmem.kvmapi.VcpuFd;
import io.guestmem.kvmapi.VmFd;
import io.guestmem.kvmapi.Arm64Kvm;
import io.guestmem.kvmapi.X86Kvm;
import io.guestmem.memslot.GuestMemfdTable;
import io.guestmem.host.HostRegion;
import io.guestmem.sys.ErrnoException;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotObserver;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.procfs.AccessOk;
import io.guestmem.sys.Arch;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import io.guestmem.sys.UseAfterClose;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A real KVM virtual machine whose memslots mirror the library's: {@link #memslotObserver()} turns every
 * memslot change into KVM_SET_USER_MEMORY_REGION2 (or v1 where USER_MEMORY2 is absent) before the library
 * publishes it, so a KVM refusal vetoes the change with KVM's own error.
 *
 * <p>Close order: vCPUs, then the slots (KVM frees them with the VM; the mirror just forgets them), the VM
 * fd, the guest_memfds this VM created, and /dev/kvm last. A closed VM throws {@link IllegalStateException}
 * from every method, the observer included.
 */
public final class KvmVm implements AutoCloseable {

    /**
     * How to open the VM.
     *
     * @param vmType          KVM_CREATE_VM's machine type (0 = default)
     * @param useRegion2      use KVM_SET_USER_MEMORY_REGION2 when offered; false forces v1 (as on kernels before 6.8)
     * @param dirtyRingBytes  enable the dirty ring (KVM_CAP_DIRTY_LOG_RING, or _ACQ_REL where only that is offered) with this many bytes per vCPU (0 = bitmap dirty log)
     */
    public record Options(long vmType, boolean useRegion2, long dirtyRingBytes) {
        public static Options defaults() {
            return new Options(0, true, 0);
        }

        public Options withRegion2(boolean use) {
            return new Options(vmType, use, dirtyRingBytes);
        }

        public Options withDirtyRing(long bytes) {
            return new Options(vmType, useRegion2, bytes);
        }
    }

    private final KvmDevice kvm;
    private final VmFd vm;
    private final KvmCapabilities caps;
    private final boolean region2;
    private final long dirtyRingBytes;
    private final List<Vcpu> vcpus = new ArrayList<>();
    private final List<KvmGuestMemfd> guestMemfds = new ArrayList<>();
    /** This VM's open guest_memfds by fd, for the memslot writer's {@code kvm_gmem_bind} checks. */
    private final GuestMemfdTable gmemTable;
    private final long vmType;
    /** The slots KVM currently has from us, by KVM slot number ({@link Memslot#kvmSlot}). */
    private final Map<Integer, Memslot> slots = new TreeMap<>();
    private final MemslotObserver observer = new Mirror();
    private final List<String> mirrorFaults = new ArrayList<>();
    private volatile boolean closed;

    private KvmVm(KvmDevice kvm, VmFd vm, KvmCapabilities caps, Options options) {
        this.kvm = kvm;
        this.vm = vm;
        this.caps = caps;
        this.region2 = options.useRegion2() && caps.userMemory2();
        this.dirtyRingBytes = options.dirtyRingBytes();
        this.vmType = options.vmType();
        this.gmemTable = caps.guestMemfd() && region2
                ? new GuestMemfdTable(gmemOverlapErrno(kvm, vmType, caps.guestMemfdMmapShared()), !Arch.CURRENT.isX86())
                : new GuestMemfdTable();
    }

    private static final java.util.concurrent.ConcurrentHashMap<Long, Errno> GMEM_OVERLAP = new java.util.concurrent.ConcurrentHashMap<>();

    /**
     * What this KVM's {@code kvm_gmem_bind} answers a binding that overlaps another of the same file, measured once
     * per VM type in a scratch VM: EINVAL through 6.18, EEXIST on Debian's 7.3. (The overlap check is the writer's
     * own; only the code it answers with is the machine's.) EINVAL when the scratch binding cannot be made.
     */
    static Errno gmemOverlapErrno(KvmDevice kvm, long vmType, boolean mmapShared) {
        return GMEM_OVERLAP.computeIfAbsent(vmType, t -> {
            long page = Posix.PAGE_SIZE;
            long flags = mmapShared ? KvmIoctls.GUEST_MEMFD_FLAG_MMAP | KvmIoctls.GUEST_MEMFD_FLAG_INIT_SHARED : 0;
            try (VmFd scratch = kvm.createVm(t); HostRegion hva = HostRegion.anonymous(page).create()) {
                int fd = scratch.createGuestMemfd(page, flags);
                try {
                    // KVM checks the hva's alignment and access_ok for a guest_memfd slot; nothing is touched
                    scratch.setUserMemoryRegion2(0, Memslot.GUEST_MEMFD, 0, page, hva.address(), 0, fd);
                    try {
                        scratch.setUserMemoryRegion2(1, Memslot.GUEST_MEMFD, 1L << 20, page, hva.address(), 0, fd);
                        return Errno.EINVAL; // accepted: no overlap check to measure; keep 6.18's code
                    } catch (ErrnoException e) {
                        Errno answered = Errno.of(e.errnoNumber());
                        return answered != null ? answered : Errno.EINVAL;
                    }
                } finally {
                    Posix.close(fd);
                }
            } catch (ErrnoException e) {
                return Errno.EINVAL;
            }
        });
    }

    public static KvmVm open() {
        return open(Options.defaults());
    }

    /**
     * Opens /dev/kvm, checks API version 12, creates the VM, reads its capabilities and, if asked, enables the
     * dirty ring (which must happen before any vCPU exists). Everything opened so far is closed on failure.
     */
    public static KvmVm open(Options options) {
        KvmDevice kvm = KvmDevice.open();
        VmFd vm = null;
        try {
            int api = kvm.apiVersion();
            if (api != KvmIoctls.KVM_API_VERSION)
                throw new KvmException(Errno.EINVAL, "KVM_GET_API_VERSION",
                        "this KVM speaks API " + api + ", guestmem needs " + KvmIoctls.KVM_API_VERSION);
            vm = kvm.createVm(options.vmType());
            KvmCapabilities caps = KvmCapabilities.read(api, vm);
            if (options.dirtyRingBytes() > 0) {
                if (!caps.dirtyLogRing())
                    throw new KvmException(Errno.EINVAL, "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING)",
                            "this KVM offers neither KVM_CAP_DIRTY_LOG_RING nor KVM_CAP_DIRTY_LOG_RING_ACQ_REL");
                String cap = KvmCap.nameOf(caps.dirtyLogRingCap());
                if (options.dirtyRingBytes() > caps.dirtyLogRingMaxBytes())
                    throw new KvmException(Errno.EINVAL, "KVM_ENABLE_CAP(" + cap + ")",
                            Fmt.size(options.dirtyRingBytes()) + " exceeds the maximum " + Fmt.size(caps.dirtyLogRingMaxBytes()));
                // the ring reader (KvmDirtyRing) uses acquire/release on the entry flags, which ACQ_REL requires
                vm.enableCap(caps.dirtyLogRingCap(), options.dirtyRingBytes());
            }
            return new KvmVm(kvm, vm, caps, options);
        } catch (RuntimeException e) {
            if (vm != null) vm.close();
            kvm.close();
            throw e;
        }
    }

    public KvmCapabilities capabilities() {
        checkOpen("capabilities()");
        return caps;
    }

    /** True when slots go through KVM_SET_USER_MEMORY_REGION2; false on the v1 fallback. */
    public boolean usesRegion2() {
        return region2;
    }

    /** The bytes of each vCPU's dirty ring, 0 when the VM uses the bitmap dirty log. */
    public long dirtyRingBytes() {
        return dirtyRingBytes;
    }

    /** The bridge-level VM fd, for architecture classes (x86 TSS address) and the dirty log. */
    public VmFd vmFd() {
        checkOpen("vmFd()");
        return vm;
    }

    /** The observer to register with the library's memslot writer: it mirrors every change into KVM. */
    public MemslotObserver memslotObserver() {
        checkOpen("memslotObserver()");
        return observer;
    }

    /**
     * A configuration for the library's memslot writer ({@link Memslots}) that matches this VM: host page
     * geometry, KVM's slot limit and address spaces, READONLY where KVM_CAP_READONLY_MEM is offered and
     * GUEST_MEMFD where guest_memfd slots can be installed (KVM_CAP_GUEST_MEMFD through region v2), the
     * machine's access_ok limit, this VM's guest-physical limit ({@link #guestPhysLimit()}) and its
     * guest_memfds (every one {@link #createGuestMemfd} made and not yet closed). With it, the writer refuses up
     * front what this KVM would refuse, and the mirror sees only the rest.
     */
    public Memslots.Config memslotsConfig() {
        checkOpen("memslotsConfig()");
        return new Memslots.Config(PageGeometry.host(), Math.min(caps.nrMemslots(), 65535), caps.addressSpaces(),
                caps.readonlyMem(), caps.guestMemfd() && region2, AccessOk.limit(), guestPhysLimit(),
                Arch.CURRENT.isX86() ? Errno.EINVAL : Errno.EFAULT, gmemTable);
    }

    /**
     * The end a created or moved slot's guest-physical range may reach in this VM, as the architecture's
     * {@code kvm_arch_prepare_memory_region} checks it: arm64 the VM's IPA size ({@link Arm64Kvm#ipaBits} of
     * its type; EFAULT beyond), x86 {@code kvm_mmu_max_gfn()}, measured ({@link X86Kvm#guestPhysBits}; EINVAL beyond). -1
     * (no limit) where the bits cannot be read.
     */
    public long guestPhysLimit() {
        int bits = Arch.CURRENT.isX86() ? X86Kvm.guestPhysBits(kvm) : Arm64Kvm.ipaBits(vmType);
        return bits > 0 && bits < 64 ? 1L << bits : -1;
    }

    /** This VM's guest_memfd table (what {@link #memslotsConfig()} hands the writer). */
    public GuestMemfdTable guestMemfdTable() {
        return gmemTable;
    }

    /** The slots KVM has from this VM's mirror, by KVM slot number ({@link Memslot#kvmSlot}). */
    public synchronized Map<Integer, Memslot> mirroredSlots() {
        checkOpen("mirroredSlots()");
        return Collections.unmodifiableMap(new TreeMap<>(slots));
    }

    /**
     * Rollbacks that KVM refused (the two sides may differ since): empty in a healthy VM. Such a failure is
     * also thrown from {@code rolledBack}, where the memslot writer attaches it to the veto as suppressed.
     */
    public synchronized List<String> mirrorFaults() {
        return List.copyOf(mirrorFaults);
    }

    /**
     * A guest_memfd for this VM with MMAP|INIT_SHARED when KVM offers both (so the host can map and touch it),
     * else with no flags (the guest alone can use it).
     */
    public KvmGuestMemfd createGuestMemfd(long size) {
        long both = KvmIoctls.GUEST_MEMFD_FLAG_MMAP | KvmIoctls.GUEST_MEMFD_FLAG_INIT_SHARED;
        return createGuestMemfd(size, caps.guestMemfdMmapShared() ? both : 0);
    }

    /** KVM_CREATE_GUEST_MEMFD with explicit flags; KVM refuses sizes that are not page-aligned (EINVAL). */
    public synchronized KvmGuestMemfd createGuestMemfd(long size, long flags) {
        checkOpen("createGuestMemfd()");
        if (!caps.guestMemfd())
            throw new KvmException(Errno.EINVAL, "KVM_CREATE_GUEST_MEMFD(" + Fmt.size(size) + ")",
                    "this KVM does not offer KVM_CAP_GUEST_MEMFD");
        KvmGuestMemfd g = new KvmGuestMemfd(vm.createGuestMemfd(size, flags), size, flags, gmemTable);
        guestMemfds.add(g);
        return g;
    }

    /** KVM_CREATE_VCPU; maps its kvm_run area and, when the VM has a dirty ring, the ring. */
    public synchronized Vcpu createVcpu(int id) {
        checkOpen("createVcpu()");
        VcpuFd fd = vm.createVcpu(id);
        try {
            KvmDirtyRing ring = dirtyRingBytes > 0 ? fd.mapDirtyRing(dirtyRingBytes) : null;
            Vcpu v = new Vcpu(this, fd, ring);
            vcpus.add(v);
            return v;
        } catch (RuntimeException e) {
            fd.close();
            throw e;
        }
    }

    public synchronized List<Vcpu> vcpus() {
        checkOpen("vcpus()");
        return List.copyOf(vcpus);
    }

    public boolean isClosed() {
        return closed;
    }

    void checkOpen(String call) {
        if (closed) throw UseAfterClose.of("KVM VM (" + vm.describe() + ")", call);
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        RuntimeException first = null;
        for (Vcpu v : vcpus) first = attempt(first, v::close);
        vcpus.clear();
        slots.clear(); // KVM frees the memslots together with the VM
        first = attempt(first, vm::close);
        for (KvmGuestMemfd g : guestMemfds) first = attempt(first, g::close);
        guestMemfds.clear();
        first = attempt(first, kvm::close);
        if (first != null) throw first;
    }

    private static RuntimeException attempt(RuntimeException first, Runnable r) {
        try {
            r.run();
        } catch (RuntimeException e) {
            if (first == null) return e;
            first.addSuppressed(e);
        }
        return first;
    }

    // ---- the mirror ----

    private void install(Memslot m, String why) {
        int slot = m.kvmSlot();
        long page = Posix.PAGE_SIZE;
        long gpa = m.baseGfn() * page, size = m.npages() * page;
        if (m.readOnly() && !caps.readonlyMem())
            throw new KvmException(Errno.EINVAL, "KVM_SET_USER_MEMORY_REGION(slot " + slot + ", " + why + ")",
                    "read-only slots need KVM_CAP_READONLY_MEM, which this KVM does not offer");
        if (m.guestMemfd() && !caps.guestMemfd())
            throw new KvmException(Errno.EINVAL, "KVM_SET_USER_MEMORY_REGION2(slot " + slot + ", " + why + ")",
                    "guest_memfd slots need KVM_CAP_GUEST_MEMFD, which this KVM does not offer");
        if (region2) {
            vm.setUserMemoryRegion2(slot, m.flags(), gpa, size, m.userspaceAddr(), m.gmemOffset(),
                    m.guestMemfd() ? m.gmemFd() : 0);
        } else {
            if (m.guestMemfd())
                throw new KvmException(Errno.EINVAL, "KVM_SET_USER_MEMORY_REGION(slot " + slot + ", " + why + ")",
                        "guest_memfd slots need KVM_SET_USER_MEMORY_REGION2 (KVM_CAP_USER_MEMORY2), "
                                + (caps.userMemory2() ? "which this VM was opened without" : "which this KVM does not offer"));
            vm.setUserMemoryRegion(slot, m.flags(), gpa, size, m.userspaceAddr());
        }
        slots.put(slot, m);
    }

    private void remove(Memslot old) {
        int slot = old.kvmSlot();
        if (region2) vm.setUserMemoryRegion2(slot, 0, 0, 0, 0, 0, 0);
        else vm.setUserMemoryRegion(slot, 0, 0, 0, 0);
        slots.remove(slot);
    }

    private void apply(MemslotChange c) {
        switch (c.kind()) {
            case CREATE -> install(c.updated(), "create");
            case DELETE -> remove(c.old());
            case MOVE -> {
                if (c.old().kvmSlot() != c.updated().kvmSlot())
                    throw new IllegalArgumentException("MOVE changes the slot number: " + c);
                install(c.updated(), "move");
            }
            case FLAGS_ONLY -> install(c.updated(), "flags");
        }
    }

    private void undo(MemslotChange c) {
        switch (c.kind()) {
            case CREATE -> remove(c.updated());
            case DELETE -> install(c.old(), "rollback of delete");
            case MOVE, FLAGS_ONLY -> install(c.old(), "rollback of " + c.kind());
        }
    }

    private final class Mirror implements MemslotObserver {
        @Override
        public void beforeCommit(MemslotChange change) {
            synchronized (KvmVm.this) {
                checkOpen("beforeCommit()");
                apply(change);
            }
        }

        @Override
        public void rolledBack(MemslotChange change) {
            synchronized (KvmVm.this) {
                if (closed) return; // KVM already dropped every slot with the VM
                try {
                    undo(change);
                } catch (RuntimeException e) {
                    mirrorFaults.add("rollback of " + change + " failed: " + e.getMessage());
                    throw e;
                }
            }
        }

        @Override
        public String toString() {
            return "KVM memslot mirror of " + vm.describe();
        }
    }
}
