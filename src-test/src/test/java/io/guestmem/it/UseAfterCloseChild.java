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

    static void check(String name, Use use) {
        try {
            use.run();
            System.out.println("CHECK " + name + " FAIL no exception");
        } catch (IllegalStateException e) {
            System.out.println("CHECK " + name + " OK " + e.getClass().getSimpleName() + ": " + e.getMessage());
        } catch (io.guestmem.access.GuestMemoryException e) {
            // GuestMemory's documented access error: a closed GuestMemory has no slots left, so it says "not RAM"
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
        check("region segment() after close", r::segment);
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
        check("memfd region fd() after close", m::fd);

        // ---- guest memory over memslots
        Memslots slots = new Memslots();
        MmuNotifier notifier = new MmuNotifier(slots);
        GuestMemory gm = new GuestMemory(slots);
        HostRegion ram = HostRegion.anonymous(16 * PAGE).create();
        gm.addRam(0, 0, ram);
        gm.writeU64(0, 7);
        MemorySegment slice = gm.slice(0, PAGE);
        gm.removeRam(0);
        check("guest memory slice after its slot is deleted", () -> slice.get(ValueLayout.JAVA_LONG, 0));
        gm.addRam(1, 0x100000, ram);
        ram.close();
        check("guest memory read after its region is closed", () -> gm.readU64(0x100000));
        gm.close();
        check("guest memory read after close", () -> gm.readU64(0x100000));
        check("guest memory write after close", () -> gm.writeU32(0x100000, 1));

        // ---- procfs readers: the fd number is reused by another open in between
        Pagemap pm = Pagemap.openSelf();
        pm.close();
        int reused = Posix.open("/proc/self/status", Posix.O_RDONLY);
        check("pagemap read after close (fd number reused)", () -> pm.readRaw(0x400000));
        Posix.close(reused);
        if (Files.isReadable(Path.of(KPageFlags.PATH))) {
            KPageFlags kf = KPageFlags.open();
            kf.close();
            check("kpageflags read after close", () -> kf.flags(1));
        }
        HostView view = HostView.openSelf();
        view.close();
        check("host view entry after close", () -> view.entry(0x400000));

        // ---- mmu
        FollowPfn fp = new FollowPfn(notifier);
        fp.close();
        check("follow_pfn after close", () -> fp.follow(FollowPfnRequest.read(0)));

        // ---- lock
        MemslotLock lock = new MemslotLock(notifier);
        lock.close();
        check("memslot lock after close", () -> lock.lockMemslot(1, LockMode.values()[0]));

        // ---- KVM
        if (Files.isReadable(Path.of("/dev/kvm")) && Files.isWritable(Path.of("/dev/kvm"))) {
            KvmVm vm = KvmVm.open();
            Vcpu vcpu = vm.createVcpu(0);
            boolean gmem = vm.capabilities().guestMemfd();
            KvmGuestMemfd g = gmem ? vm.createGuestMemfd(4 * PAGE) : null;
            vcpu.close();
            check("vcpu run after close", vcpu::run);
            check("vcpu fd after close", vcpu::vcpuFd);
            if (gmem) {
                g.close();
                check("guest_memfd mapShared after close", g::mapShared);
                check("guest_memfd punchHole after close", () -> g.punchHole(0, PAGE));
            } else {
                System.out.println("INFO KVM_CAP_GUEST_MEMFD is 0 here: guest_memfd fds not checked");
            }
            Vcpu v1 = vm.createVcpu(1);
            GuestMemfdRegion gr = GuestMemfdRegion.create(vm, 4 * PAGE);
            gr.close();
            check("guest_memfd region acquire after close", () -> gr.acquire(0, false));
            check("guest_memfd region toPrivate after close", () -> gr.toPrivate(0, PAGE));
            vm.close();
            check("vcpu run after its VM is closed", v1::run);
            check("VM createVcpu after close", () -> vm.createVcpu(2));
            if (gmem) check("VM createGuestMemfd after close", () -> vm.createGuestMemfd(4 * PAGE));
            check("VM fd after close", vm::vmFd);
            check("VM memslot observer after close", () -> vm.memslotObserver().beforeCommit(new MemslotChange(
                    MemslotChange.Kind.CREATE, null, new io.guestmem.memslot.Memslot(0, 5, 0, 1, 0x10000000L, 0, -1, 0))));
        } else {
            System.out.println("INFO no access to /dev/kvm: KVM objects not checked");
        }
        System.out.println("DONE");
    }
}
