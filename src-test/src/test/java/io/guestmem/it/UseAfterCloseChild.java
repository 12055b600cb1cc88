package io.guestmem.it;

import io.guestmem.access.GuestMemory;
import io.guestmem.gmem.GuestMemfdRegion;
import io.guestmem.host.HostRegion;
import io.guestmem.kvm.KvmGuestMemfd;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.lock.LockMode;
import io.guestmem.lock.MemslotLock;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.FollowPfn;
import io.guestmem.mmu.FollowPfnRequest;
import io.guestmem.mmu.HostView;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Pagemap;
import io.guestmem.sys.Posix;
import io.guestmem.mmu.DirtyLog;
import io.guestmem.mmu.FollowPfnCollaborators;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Child JVM of {@link UseAfterCloseTest}: uses every closeable object of the library after closing it and prints
 * {@code CHECK <name> OK <exception>} when the use threw, {@code CHECK <name> FAIL ...} when it did not. If one of
 * them crashed the JVM instead, the parent sees the exit status and the checks that never printed.
 */
public final class UseAfterCloseChild {
    static final long PAGE = Posix.PAGE_SIZE;

    interface Use {
        void run() throws Exception;
    }

    /**
     * {@link #check}, stricter: the use must throw IllegalStateException whose message names {@code call}
     * (the objects whose use-after-close failure this library words itself).
     */
    static void checkNamed(String name, String call, Use use) {
        try {
            use.run();
            System.out.println("CHECK " + name + " FAIL no exception");
        } catch (IllegalStateException e) {
            String m = String.valueOf(e.getMessage());
            if (m.contains(call) && m.contains("closed")) {
                System.out.println("CHECK " + name + " OK " + e.getClass().getSimpleName() + ": " + m);
            } else {
                System.out.println("CHECK " + name + " FAIL the message does not name the call " + call + ": " + m);
            }
        } catch (Throwable e) {
            System.out.println("CHECK " + name + " OTHER " + e);
        }
        System.out.flush();
    }

    static void check(String name, Use use) {
        try {
            use.run();
            System.out.println("CHECK " + name + " FAIL no exception");
        } catch (IllegalStateException e) {
            System.out.println("CHECK " + name + " OK " + e.getClass().getSimpleName() + ": " + e.getMessage());
        } catch (io.guestmem.access.GuestMemoryException e) {
            // GuestMemory's documented access error for an open memory whose slot lost its region (NO_HOST_MEMORY)
            System.out.println("CHECK " + name + " OK " + e.getClass().getSimpleName() + ": " + e.getMessage());
        } catch (Throwable e) {
            System.out.println("CHECK " + name + " OTHER " + e);
        }
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        // ---- host regions
        HostRegion r = HostRegion.anonymous(4 * PAGE).create();
        MemorySegment seg = r.segment();
        seg.set(ValueLayout.JAVA_LONG, 0, 42);
        r.close();
        check("region segment read after close", () -> seg.get(ValueLayout.JAVA_LONG, 0));
        check("region segment write after close", () -> seg.set(ValueLayout.JAVA_LONG, 8, 1));
        checkNamed("region segment() after close", "segment()", r::segment);
        checkNamed("region view() after close", "view()", () -> r.view(0, PAGE));
        check("region segment read after close, other thread", () -> {
            AtomicReference<Throwable> t = new AtomicReference<>();
            Thread th = new Thread(() -> {
                try {
                    seg.get(ValueLayout.JAVA_LONG, 0);
                } catch (Throwable e) {
                    t.set(e);
                }
            });
            th.start();
            th.join();
            if (t.get() instanceof IllegalStateException ise) throw ise;
        });
        HostRegion m = HostRegion.memfd(4 * PAGE).name("uac").create();
        m.close();
        checkNamed("memfd region fd() after close", "fd()", m::fd);
        HostRegion vr = HostRegion.anonymous(4 * PAGE).create();
        io.guestmem.host.RegionView view0 = vr.view(0, 2 * PAGE);
        MemorySegment viewSeg = view0.segment();
        view0.close();
        check("region view segment read after the view is closed", () -> viewSeg.get(ValueLayout.JAVA_LONG, 0));
        io.guestmem.host.RegionView view1 = vr.view(PAGE, PAGE);
        MemorySegment view1Seg = view1.segment();
        vr.close();
        check("region view segment read after its region is closed", () -> view1Seg.get(ValueLayout.JAVA_LONG, 0));

        // ---- guest memory over memslots
        Memslots slots = new Memslots();
        MmuNotifier notifier = new MmuNotifier(slots);
        GuestMemory gm = new GuestMemory(slots);
        HostRegion ram = HostRegion.anonymous(16 * PAGE).create();
        gm.addRam(0, 0, ram);
        gm.writeU64(0, 7);
        io.guestmem.access.GuestSlice slice = gm.slice(0, PAGE);
        gm.removeRam(0);
        check("guest memory slice after its slot is deleted", () -> slice.readU64(0));
        gm.addRam(1, 0x100000, ram);
        ram.close();
        check("guest memory read after its region is closed", () -> gm.readU64(0x100000));
        gm.close();
        checkNamed("guest memory read after close", "readU64()", () -> gm.readU64(0x100000));
        checkNamed("guest memory write after close", "writeU32()", () -> gm.writeU32(0x100000, 1));
        checkNamed("guest memory acquire read after close", "readU32Acquire()", () -> gm.readU32Acquire(0x100000));
        checkNamed("guest memory slice after close", "slice()", () -> gm.slice(0x100000, 8));
        checkNamed("guest memory empty read after close", "read()", () -> gm.read(0x100000, new byte[0]));

        // ---- procfs readers: the fd number is reused by another open in between
        Pagemap pm = Pagemap.openSelf();
        pm.close();
        int reused = Posix.open("/proc/self/status", Posix.O_RDONLY);
        checkNamed("pagemap read after close (fd number reused)", "pread", () -> pm.readRaw(0x400000));
        Posix.close(reused);
        if (Files.isReadable(Path.of(KPageFlags.PATH))) {
            KPageFlags kf = KPageFlags.open();
            kf.close();
            checkNamed("kpageflags read after close", "pread", () -> kf.flags(1));
        }
        Pagemap scanPm = Pagemap.openSelf();
        io.guestmem.procfs.PagemapScan scan = io.guestmem.procfs.PagemapScan.open(scanPm);
        scan.close();
        checkNamed("PAGEMAP_SCAN after close", "scan()", () -> scan.scan(0x400000, 0x400000 + PAGE, io.guestmem.procfs.PagemapScan.PRESENT));
        scanPm.close();
        checkNamed("PAGEMAP_SCAN over a closed pagemap", "closed", () -> io.guestmem.procfs.PagemapScan.open(scanPm));
        io.guestmem.sys.Userfaultfd uffd = io.guestmem.sys.Userfaultfd.open(true);
        uffd.close();
        checkNamed("userfaultfd fd() after close", "fd()", uffd::fd);
        checkNamed("userfaultfd api() after close", "api()", () -> uffd.api(0));
        HostView view = HostView.openSelf();
        view.close();
        check("host view entry after close", () -> view.entry(0x400000));

        // ---- mmu
        FollowPfn fp = new FollowPfn(notifier, FollowPfnCollaborators.standalone());
        fp.close();
        check("follow_pfn after close", () -> fp.follow(FollowPfnRequest.read(0)));

        // ---- lock
        MemslotLock lock = new MemslotLock(notifier, DirtyLog.NONE);
        lock.close();
        checkNamed("memslot lock after close", "lockMemslot()", () -> lock.lockMemslot(1, LockMode.values()[0]));
        checkNamed("memslot unlock after close", "unlockMemslot()", () -> lock.unlockMemslot(1));
        checkNamed("memslot unlockAll after close", "unlockAll()", lock::unlockAll);
        checkNamed("memslot isLocked after close", "isLocked()", () -> lock.isLocked(1));
        checkNamed("memslot lockedPfn after close", "lockedPfn()", () -> lock.lockedPfn(0, 0));
        checkNamed("memslot relaxWrite after close", "relaxWrite()", () -> lock.relaxWrite(0, 0));
        checkNamed("memslot status after close", "status()", lock::status);
        checkNamed("memslot stage2 after close", "stage2()", () -> lock.stage2(1));
        checkNamed("capability gate over a closed memslot lock", "enableCapability",
                () -> new io.guestmem.lock.VmCapabilityGate(lock).enableCapability(io.guestmem.lock.VmCapabilityGate.MTE));

        // ---- the VM's memory, wired, and the pieces without KVM
        io.guestmem.vm.VmMemory vmm = new io.guestmem.vm.VmMemory();
        vmm.close();
        checkNamed("VmMemory addGuestMemfd after close", "addGuestMemfd()",
                () -> vmm.addGuestMemfd(3, 0x4000_0000L, GuestMemfdRegion.standIn(4 * PAGE)));
        check("VmMemory follow_pfn after close", () -> vmm.followPfn().follow(FollowPfnRequest.read(0)));
        check("VmMemory memslot lock after close", () -> vmm.lock().lockMemslot(1, LockMode.READ));
        FollowPfn fpc = new FollowPfn(notifier, FollowPfnCollaborators.standalone());
        io.guestmem.mmu.PfnCache cache = new io.guestmem.mmu.PfnCache(fpc, 0);
        cache.close();
        check("pfn cache activate after close", () -> cache.activate(0, 8));
        fpc.close();
        GuestMemfdRegion standIn = GuestMemfdRegion.standIn(4 * PAGE);
        standIn.close();
        check("guest_memfd stand-in zapHostMapping after close", () -> standIn.zapHostMapping(0, PAGE));
        check("guest_memfd stand-in toPrivate after close", () -> standIn.toPrivate(0, PAGE));
        check("guest_memfd stand-in getLong after close", () -> standIn.getLong(0));
        HostRegion wpRam = HostRegion.anonymous(4 * PAGE).create();
        try {
            io.guestmem.kvm.UffdWpDirtyTracker wp = io.guestmem.kvm.UffdWpDirtyTracker.start(
                    new io.guestmem.memslot.Memslot(0, 9, 0x9000, 4, wpRam.address(), io.guestmem.memslot.Memslot.LOG_DIRTY_PAGES, -1, 0));
            wp.close();
            checkNamed("userfaultfd write-protect dirty tracker collect after close", "collect()", wp::collect);
        } catch (UnsupportedOperationException | io.guestmem.sys.ErrnoException e) {
            System.out.println("INFO userfaultfd write-protect tracking unavailable here, not checked: " + e.getMessage());
        }
        wpRam.close();

        // ---- KVM
        if (Files.isReadable(Path.of("/dev/kvm")) && Files.isWritable(Path.of("/dev/kvm"))) {
            KvmVm vm = KvmVm.open();
            Vcpu vcpu = vm.createVcpu(0);
            // guest_memfd only where KVM_CAP_GUEST_MEMFD says the kernel has it (0 on 6.12 arm64).
            boolean gmem = vm.capabilities().guestMemfd();
            KvmGuestMemfd g = gmem ? vm.createGuestMemfd(4 * PAGE) : null;
            io.guestmem.kvmapi.KvmRun kvmRun = vcpu.vcpuFd().kvmRun();
            vcpu.close();
            checkNamed("vcpu run after close", "run()", vcpu::run);
            checkNamed("vcpu fd after close", "vcpuFd()", vcpu::vcpuFd);
            checkNamed("kvm_run read after its vcpu is closed", "kvm_run", kvmRun::exitReason);
            if (gmem) {
                g.close();
                checkNamed("guest_memfd mapShared after close", "mapShared()", g::mapShared);
                checkNamed("guest_memfd punchHole after close", "punchHole()", () -> g.punchHole(0, PAGE));
            } else {
                System.out.println("INFO KVM_CAP_GUEST_MEMFD is 0: guest_memfd objects not checked (the stand-in region is)");
            }
            Vcpu v1 = vm.createVcpu(1);
            GuestMemfdRegion gr = GuestMemfdRegion.create(vm, 4 * PAGE);
            gr.close();
            check("guest_memfd region getLong after close", () -> gr.getLong(0));
            check("guest_memfd region toPrivate after close", () -> gr.toPrivate(0, PAGE));
            HostRegion logRam = HostRegion.anonymous(4 * PAGE).create();
            io.guestmem.memslot.Memslot logged = new io.guestmem.memslot.Memslot(0, 6, 0x6000, 4, logRam.address(),
                    io.guestmem.memslot.Memslot.LOG_DIRTY_PAGES, -1, 0);
            io.guestmem.memslot.MemslotObserver mirror = vm.memslotObserver(); // kept past close, as a writer does
            mirror.beforeCommit(new MemslotChange(MemslotChange.Kind.CREATE, null, logged));
            io.guestmem.kvm.KvmDirtyLog log = io.guestmem.kvm.KvmDirtyLog.of(vm, logged);
            log.close();
            checkNamed("KVM dirty log bitmap after close", "bitmap()", log::bitmap);
            vm.close();
            checkNamed("vcpu run after its VM is closed", "run()", v1::run);
            checkNamed("VM createVcpu after close", "createVcpu()", () -> vm.createVcpu(2));
            if (gmem) checkNamed("VM createGuestMemfd after close", "createGuestMemfd()", () -> vm.createGuestMemfd(4 * PAGE));
            checkNamed("VM fd after close", "vmFd()", vm::vmFd);
            checkNamed("VM capabilities after close", "capabilities()", vm::capabilities);
            checkNamed("VM memslot observer getter after close", "memslotObserver()", vm::memslotObserver);
            logRam.close();
            checkNamed("VM memslot observer after close", "beforeCommit()", () -> mirror.beforeCommit(new MemslotChange(
                    MemslotChange.Kind.CREATE, null, new io.guestmem.memslot.Memslot(0, 5, 0, 1, 0x10000000L, 0, -1, 0))));
        } else {
            System.out.println("INFO no access to /dev/kvm: KVM objects not checked");
        }
        System.out.println("DONE");
    }
}
