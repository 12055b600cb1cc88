package io.guestmem.cli;

import io.guestmem.access.GuestMemory;
import io.guestmem.gmem.GuestMemfdBacking;
import io.guestmem.gmem.GuestMemfdRegion;
import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.host.HugePageSize;
import io.guestmem.kvm.KvmDirtyLog;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.GuestCpu;
import io.guestmem.lock.LockMode;
import io.guestmem.lock.MemslotLock;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.FollowPfn;
import io.guestmem.mmu.FollowPfnRequest;
import io.guestmem.mmu.FollowPfnResult;
import io.guestmem.mmu.LevelSizes;
import io.guestmem.mmu.MappingLevel;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.vm.VmMemory;
import io.guestmem.mmu.PfnObservability;
import io.guestmem.mmu.RefcountedPage;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.sys.Arch;
import io.guestmem.sys.Capabilities;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Rlimit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The demo's VM: maps one slot per backing the machine can give, mirrors the slots into a real KVM VM, lets
 * a tiny guest write a distinct value into every page, then checks each page three ways against the kernel:
 * the value read through gfn → hva is the guest's, follow_pfn's pfn equals pagemap's for that hva (under the
 * notifier's retry check), and the page is classified refcounted as the kernel's kpageflags say. One slot is
 * locked within RLIMIT_MEMLOCK.
 *
 * <p>Closes everything it made, in reverse order, hugetlb pool included.
 */
final class DemoVm implements AutoCloseable {

    /** Slot 0 holds the guest's code and GDT; data slots start at this gpa, one every {@link #SLOT_STRIDE}. */
    static final long FIRST_DATA_GPA = 16L << 20;
    static final long SLOT_STRIDE_MIN = 16L << 20;

    private final List<AutoCloseable> resources = new ArrayList<>();
    private final List<SlotPlan> plans = new ArrayList<>();
    private final List<String> notes = new ArrayList<>();
    private final VmMemory vmMemory;
    private final Memslots memslots;
    private final MmuNotifier notifier;
    private final FollowPfn follow;
    private final MemslotLock locks;
    private final GuestMemory memory;
    private final KvmVm vm;
    private final String kvmReason;

    /**
     * One data or boot slot: its backing, the name the report gives it, the region behind it, and whether the
     * guest writes it.
     */
    private record SlotPlan(int id, DemoBacking backing, String label, HostRegion region, Memslot slot,
                            boolean guestWrites, KvmDirtyLog dirtyLog) {
        boolean is(Backing kind) {
            return backing.kind() == kind;
        }
    }

    DemoVm() {
        KvmVm opened = null;
        String reason = null;
        try {
            opened = KvmVm.open();
        } catch (RuntimeException e) {
            reason = "/dev/kvm: " + e.getMessage();
        }
        vm = opened;
        kvmReason = reason;
        if (vm != null) resources.add(vm);
        // The library's composition (io.guestmem.vm): memslots mirrored into the VM, follow_pfn, lock and
        // accessors wired together; closed before the VM and after the regions (reverse order of resources).
        vmMemory = new VmMemory(vm);
        resources.add(vmMemory);
        memslots = vmMemory.memslots();
        notifier = vmMemory.notifier();
        follow = vmMemory.followPfn();
        locks = vmMemory.lock();
        memory = vmMemory.memory();
    }

    boolean kvmAvailable() {
        return vm != null;
    }

    /**
     * Maps and registers one slot per backing in {@code backings} of {@code sizeBytes} each (a PFNMAP slot is
     * the perf ring's size). A backing the machine cannot give is left out with a note.
     */
    void map(List<DemoBacking> backings, long sizeBytes, Progress progress) {
        addBootSlot();
        long stride = Math.max(SLOT_STRIDE_MIN, Long.highestOneBit(sizeBytes - 1) << 1);
        long gpa = FIRST_DATA_GPA;
        int id = 1;
        for (DemoBacking b : backings) {
            HostRegion region;
            GuestMemfdRegion gmem = null;
            try {
                if (b.kind() == Backing.GUEST_MEMFD) {
                    gmem = guestMemfd(sizeBytes);
                    region = gmem == null ? null : gmem.hostRegion();
                } else {
                    region = create(b, sizeBytes);
                }
            } catch (RuntimeException e) {
                notes.add(b + ": not mapped: " + e.getMessage());
                progress.step(1);
                continue;
            }
            if (region == null) {
                progress.step(1);
                continue;
            }
            resources.add(gmem != null ? gmem : region);
            long align = Math.max(region.pageSize(), 2L << 20);
            gpa = (gpa + align - 1) & -align;
            if (b.hugePageBytes() == 1L << 30) gpa = Math.max(gpa, 1L << 30);
            try {
                plans.add(gmem != null ? registerGuestMemfd(id, b, gmem, gpa) : register(id, b, region, gpa));
                id++;
                gpa += Math.max(stride, (region.size() + align - 1) & -align);
            } catch (RuntimeException e) {
                notes.add(b + ": slot refused: " + e.getMessage());
            }
            progress.step(1);
        }
    }

    private void addBootSlot() {
        HostRegion boot = HostRegion.anonymous(DemoGuest.BOOT_SIZE).create();
        resources.add(boot);
        Memslot s = memory.addRam(DemoGuest.BOOT_SLOT, 0, boot);
        plans.add(new SlotPlan(DemoGuest.BOOT_SLOT, DemoBacking.of(Backing.ANON), "anon (boot)", boot, s, false, null));
    }

    /** The region of a backing other than guest_memfd, or null (with a note) when this machine has none. */
    private HostRegion create(DemoBacking backing, long size) {
        return switch (backing.kind()) {
            case ANON -> HostRegion.anonymous(size).create();
            case THP -> thp(size);
            case MEMFD -> HostRegion.memfd(size).create();
            case HUGETLB_2M, HUGETLB_1G, HUGETLB_OTHER -> hugetlb(backing, size);
            case PFNMAP -> pfnmap();
            case SECRET -> HostRegion.secret(size).create();
            default -> throw new IllegalArgumentException("the demo maps no " + backing + " slot"); // DemoBacking.KNOWN
        };
    }

    /** A hugetlb region on a pool raised by exactly what it needs; the reservation is closed after the region. */
    private HostRegion hugetlb(DemoBacking backing, long size) {
        long bytes = backing.hugePageBytes();
        HugePageSize hs = HugePagePools.sizes().stream().filter(s -> s.bytes() == bytes).findFirst().orElse(null);
        if (hs == null) {
            notes.add(backing + ": this kernel has no " + Fmt.size(bytes) + " hugetlb pool");
            return null;
        }
        long pageSize = hs.bytes();
        long rounded = (size + pageSize - 1) / pageSize * pageSize;
        long need = rounded / pageSize - HugePagePools.pool(hs).obtainable();
        if (need > 0) {
            // Closed after the region (resources close in reverse order), so the pool goes back exactly; a
            // kill at any instant is undone too (surplus pages go with the mapping, the guardian restores the knob).
            resources.add(HugePagePools.raise(hs, need));
        }
        return HostRegion.hugetlb(rounded, hs).create();
    }

    /** A THP region of at least one PMD (32M on 16K arm64, where an 8M slot could hold no THP). */
    private HostRegion thp(long size) {
        long pmd = Math.max(HugePagePools.thpSize(), io.guestmem.sys.Posix.PAGE_SIZE);
        long rounded = (size + pmd - 1) / pmd * pmd;
        if (rounded != size) notes.add("thp: slot rounded up to " + Fmt.size(rounded) + ", whole " + Fmt.size(pmd) + " THPs");
        return HostRegion.thp(rounded).create();
    }

    /** A perf ring where the kernel maps it VM_PFNMAP (its smaps VmFlags say); otherwise a note of why not. */
    private HostRegion pfnmap() {
        var why = io.guestmem.host.Pfnmap.unavailableReason();
        if (why.isPresent()) {
            notes.add("pfnmap: no slot: " + why.get());
            return null;
        }
        return HostRegion.perfRing(8).create();
    }

    /**
     * The guest_memfd region, made the way a VMM makes it ({@link GuestMemfdRegion}, bound through
     * {@link VmMemory#addGuestMemfd}, so follow_pfn, the accessors and conversions share its page states): a
     * real guest_memfd the host can map (MMAP|INIT_SHARED), or a memfd standing in without KVM or when this KVM
     * cannot map guest_memfd; null (left out, with a note) when KVM has no guest_memfd at all.
     */
    private GuestMemfdRegion guestMemfd(long size) {
        if (vm != null && !vm.capabilities().guestMemfd()) {
            notes.add("guest_memfd: left out: KVM_CAP_GUEST_MEMFD is 0 on this kernel (" + Arch.CURRENT.name() + ")");
            return null;
        }
        if (vm == null || !vm.capabilities().guestMemfdMmapShared()) {
            notes.add("guest_memfd: " + (vm == null ? "no KVM" : "this KVM cannot mmap guest_memfd (GUEST_MEMFD_FLAGS)")
                    + "; a memfd stands in, reported as backing '" + STAND_IN + "'");
            return GuestMemfdRegion.standIn(size, vmMemory.notifier());
        }
        return GuestMemfdRegion.create(vm, size, vmMemory.notifier());
    }

    /** The report's name of a memfd standing in for a guest_memfd. */
    private static final String STAND_IN = "memfd (guest_memfd stand-in)";

    private SlotPlan registerGuestMemfd(int id, DemoBacking backing, GuestMemfdRegion g, long gpa) {
        Memslot slot = vmMemory.addGuestMemfd(id, gpa, g);
        String label = g.backing() == GuestMemfdBacking.MEMFD_STAND_IN ? STAND_IN : backing.label();
        return new SlotPlan(id, backing, label, g.hostRegion(), slot, true, null);
    }

    private SlotPlan register(int id, DemoBacking backing, HostRegion region, long gpa) {
        boolean pfnmap = backing.kind() == Backing.PFNMAP, secret = backing.kind() == Backing.SECRET;
        // Guest-written slots log dirty pages (KVM refuses it only for guest_memfd), so the demo can hold
        // KVM's log of the guest's writes against the pages it wrote, backing by backing.
        int flags = pfnmap ? Memslot.READONLY : vm != null && !secret ? Memslot.LOG_DIRTY_PAGES : 0;
        Memslot slot = memory.addRam(id, gpa, region, 0, region.size(), flags);
        KvmDirtyLog log = null;
        if ((flags & Memslot.LOG_DIRTY_PAGES) != 0) {
            log = KvmDirtyLog.of(vm, slot);
            resources.add(log);
        }
        return new SlotPlan(id, backing, backing.label(), region, slot, !pfnmap && !secret, log);
    }

    /** Runs the guest over every guest-written slot (or, without KVM, writes the same values from the host). */
    DemoReport.Kvm runGuest(Progress progress) {
        List<SlotPlan> targets = plans.stream().filter(SlotPlan::guestWrites).toList();
        long expected = 0, logged = 0;
        boolean anyLog = false;
        if (vm == null) {
            for (SlotPlan p : targets) {
                for (long gfn = p.slot.baseGfn(); gfn < p.slot.endGfn(); gfn++)
                    memory.writeU64(gfn << shift(), pageValue(gfn));
                progress.step(1);
            }
            return new DemoReport.Kvm(false, false, kvmReason, 0, null, null);
        }
        // This architecture's guest (x86 flat32 ending in HLT, arm64 EL1 ending in PSCI SYSTEM_OFF): the code
        // (and x86's GDT) in the boot slot at DemoGuest.CODE_GPA.
        GuestCpu.current().prepareVm(vm);
        DemoGuest guest = new DemoGuest(memory, vm.createVcpu(0));
        long exits = 0;
        for (SlotPlan p : targets) {
            exits += guest.write(p.slot, memslots.geometry().pageSize(), DemoGuest.TAG).size() + 1; // and the clean end itself
            if (p.dirtyLog != null) {
                // The guest wrote every page of the slot, so the log is exact iff it names each gfn once.
                anyLog = true;
                expected += p.slot.npages();
                long[] gfns = p.dirtyLog.collect();
                logged += java.util.Arrays.stream(gfns).filter(p.slot::containsGfn).distinct().count();
            }
            progress.step(1);
        }
        return new DemoReport.Kvm(true, true, null, exits, anyLog ? logged : null, anyLog ? expected : null);
    }

    /** What the guest leaves at the start of host page {@code gfn}: the value of the 4 KiB guest page there. */
    private long pageValue(long gfn) {
        return GuestCpu.pageValue((gfn << shift()) / GuestCpu.GUEST_PAGE, DemoGuest.TAG);
    }

    private int shift() {
        return memslots.geometry().shift();
    }

    /** Follows every gfn to its pfn, checks the guest's pages against the kernel, and fills the table. */
    List<DemoReport.Slot> verify(List<String> disagreements, long[] agreeTotal, Progress progress) {
        List<DemoReport.Slot> rows = new ArrayList<>();
        LevelSizes sizes = follow.levels().sizes();
        try (Pagemap pm = Pagemap.openSelf()) {
            for (SlotPlan p : plans) {
                Memslot s = p.slot;
                long present = 0, ref = 0, nonRef = 0;
                boolean observable = true;
                for (long gfn = s.baseGfn(); gfn < s.endGfn(); gfn++) {
                    FollowPfnResult r = follow.follow(FollowPfnRequest.read(gfn).withSlot(s).withGuarded(true));
                    try {
                        if (r.ok() && r.observability() == PfnObservability.NOT_OBSERVABLE) {
                            observable = false;
                            nonRef++;
                            continue;
                        }
                        if (!r.ok()) {
                            if (p.guestWrites) disagreements.add("gfn " + Fmt.hex(gfn) + ": follow_pfn " + r.error());
                            continue;
                        }
                        long raw = pm.readRaw(r.hva());
                        if (PagemapEntry.isPresent(raw)) present++;
                        RefcountedPage page = r.page();
                        boolean refcounted = page != null && page.linux613Rule(RefcountedPage.Path.GUP).refcounted();
                        if (refcounted) ref++; else nonRef++;
                        if (r.observability() == PfnObservability.HIDDEN) observable = false;
                        if (p.guestWrites) {
                            agreeTotal[1]++;
                            String why = check(p, gfn, r, raw, pm, refcounted);
                            if (why == null) agreeTotal[0]++;
                            else if (disagreements.size() < 20) disagreements.add("gfn " + Fmt.hex(gfn) + " (" + p.label + "): " + why);
                        }
                    } finally {
                        follow.releaseFaultinPage(r, false, false);
                    }
                }
                Map<String, Long> levels = observable || !p.is(Backing.PFNMAP) ? levels(p, sizes) : zeroLevels(sizes);
                boolean locked = locks.isLocked(s.id());
                long pinned = locked ? s.npages() << shift() : 0;
                io.guestmem.lock.PinKind kind = locks.pinKind(s.addressSpace(), s.id());
                rows.add(new DemoReport.Slot(s.id(), s.baseGfn(), s.endGfn(), p.label, s.npages() << shift(), present,
                        ref, nonRef, levels, locked, pinned, kind == null ? null : kind.name(), p.guestWrites, observable,
                        p.is(Backing.PFNMAP) ? "VM_PFNMAP: the kernel's page walk hides these pfns" : null));
                progress.step(1);
            }
        }
        return rows;
    }

    /** Why page {@code gfn} disagrees with the kernel, or null when it agrees. */
    private String check(SlotPlan p, long gfn, FollowPfnResult r, long raw, Pagemap pm, boolean refcounted) {
        long want = pageValue(gfn);
        long got = memory.readU64(gfn << shift());
        if (got != want) return "value " + Fmt.hex(got) + ", the guest wrote " + Fmt.hex(want);
        if (notifier.retryGfn(gfn, r.sequence())) return "invalidated while checked";
        if (r.observability() == PfnObservability.VISIBLE && pm.pfnOf(raw) != r.pfn())
            return "follow_pfn " + Fmt.hex(r.pfn()) + " but pagemap " + Fmt.hex(pm.pfnOf(raw));
        if (!refcounted) return "a page the guest wrote is not a refcounted page (" + r.page() + ")";
        return null;
    }

    /**
     * Base pages by host mapping level. A PMD or PUD mapping covers its whole aligned block, so asking the
     * level once per block is exact and costs one lookup per block, not per page.
     */
    private Map<String, Long> levels(SlotPlan p, LevelSizes sizes) {
        Map<String, Long> out = zeroLevels(sizes);
        long page = memslots.geometry().pageSize();
        long block = Math.max(sizes.size(MappingLevel.PMD), p.region.pageSize());
        long start = p.slot.userspaceAddr(), end = start + (p.slot.npages() << shift());
        for (long b = start & -block; b < end; b += block) {
            long from = Math.max(b, start), to = Math.min(b + block, end);
            MappingLevel level = follow.levels().hostMappingLevel(from);
            out.merge(label(sizes.size(level)), (to - from) / page, Long::sum);
        }
        return out;
    }

    private static Map<String, Long> zeroLevels(LevelSizes sizes) {
        Map<String, Long> m = new LinkedHashMap<>();
        for (MappingLevel l : MappingLevel.values()) m.put(label(sizes.size(l)), 0L);
        return m;
    }

    private static String label(long bytes) {
        return PageClassification.levelLabel(bytes);
    }

    /**
     * Locks the first guest-written slot that fits RLIMIT_MEMLOCK (all fit with CAP_IPC_LOCK): READ_WRITE, or
     * READ for a slot that logs dirty pages (a write lock of one is EPERM, "KVM: arm64: Add lock/unlock memslot
     * user API").
     */
    DemoReport.Memlock lockOne(long vmLckBefore, long vmPinBefore) {
        long limit = Rlimit.getrlimit(Rlimit.RLIMIT_MEMLOCK).soft();
        boolean cap = Capabilities.has(Capabilities.CAP_IPC_LOCK);
        String locked = null, kind = null;
        List<String> refused = new ArrayList<>();
        for (SlotPlan p : plans) {
            if (!p.guestWrites || p.is(Backing.GUEST_MEMFD)) continue;
            LockMode mode = p.slot.logsDirty() ? LockMode.READ : LockMode.READ_WRITE;
            try {
                kind = locks.lockMemslot(p.id, mode).pinKind().name();
                locked = "slot " + p.id + " (" + p.label + ", " + Fmt.size(p.slot.npages() << shift()) + ", " + mode + ", " + kind + ")";
                break;
            } catch (RuntimeException e) {
                refused.add("slot " + p.id + " (" + p.label + "): " + e.getMessage());
            }
        }
        ProcStatus st = ProcStatus.self();
        return new DemoReport.Memlock(limit, cap, vmLckBefore, st.vmLck(), vmPinBefore, st.vmPin(), locked, kind,
                refused.isEmpty() ? null : String.join("; ", refused));
    }

    List<String> notes() {
        return notes;
    }

    /** The guest memory of every slot (what a snapshot saves). */
    GuestMemory memory() {
        return memory;
    }

    /** Why KVM could not be used, null when it can. */
    String kvmReason() {
        return kvmReason;
    }

    @Override
    public void close() {
        RuntimeException first = null;
        try {
            locks.unlockAll();
        } catch (RuntimeException e) {
            first = e;
        }
        for (int i = resources.size() - 1; i >= 0; i--) {
            try {
                resources.get(i).close();
            } catch (Exception e) {
                if (first == null) first = e instanceof RuntimeException r ? r : new IllegalStateException(e);
                else first.addSuppressed(e);
            }
        }
        if (first != null) throw first;
    }
}
