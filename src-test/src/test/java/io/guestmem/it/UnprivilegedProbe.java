package io.guestmem.it;

import io.guestmem.access.GuestMemory;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.host.Prefault;
import io.guestmem.kvm.KvmVm;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.FollowPfn;
import io.guestmem.mmu.FollowPfnRequest;
import io.guestmem.mmu.FollowPfnResult;
import io.guestmem.mmu.KvmPfn;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.sys.Posix;
import io.guestmem.sys.Rlimit;
import io.guestmem.mmu.FollowPfnCollaborators;
import java.util.List;
import java.util.function.Supplier;

/**
 * Child JVM of {@link UnprivilegedTest}, run as uid 65534 without capabilities: prints {@code WORKS <what> ...}
 * for what must work and {@code REFUSED <what>: <message>} for what the kernel refuses (or
 * {@code UNEXPECTED ...}).
 */
public final class UnprivilegedProbe {
    static final long PAGE = Posix.PAGE_SIZE;

    public static void main(String[] args) {
        ProcStatus st = ProcStatus.self();
        System.out.println("INFO uid=" + st.uid() + " CapEff=" + Long.toHexString(st.capEff()) + " RLIMIT_MEMLOCK="
                + Rlimit.getrlimit(Rlimit.RLIMIT_MEMLOCK));
        long pages = 64;
        try (Pagemap pm = Pagemap.openSelf()) {
            System.out.println("INFO pagemap pfnVisible=" + pm.pfnVisible());
            for (Supplier<HostRegion> kind : List.<Supplier<HostRegion>>of(
                    () -> HostRegion.anonymous(pages * PAGE).prefault(Prefault.Mode.WRITE).create(),
                    () -> HostRegion.anonymousShared(pages * PAGE).prefault(Prefault.Mode.WRITE).create(),
                    () -> HostRegion.memfd(pages * PAGE).name("nobody").prefault(Prefault.Mode.WRITE).create(),
                    () -> HostRegion.thp(HugePagePools.thpSize()).prefault(Prefault.Mode.WRITE).create())) {
                try (HostRegion r = kind.get()) {
                    int n = (int) (r.size() / PAGE);
                    List<PagemapEntry> es = pm.entries(r.address(), n);
                    long present = es.stream().filter(PagemapEntry::present).count();
                    long hidden = es.stream().filter(e -> e.pfnState() == PagemapEntry.PfnState.HIDDEN).count();
                    long zero = es.stream().filter(e -> e.pfn().isPresent() && e.pfn().getAsLong() == 0).count();
                    System.out.println("WORKS region " + r.backing() + " pages=" + n + " present=" + present + " hidden=" + hidden
                            + " pfn0=" + zero);
                }
            }
        }
        // Memslots, gfn -> hva, guest memory, follow_pfn: pure library over memory the user owns.
        Memslots slots = new Memslots();
        MmuNotifier notifier = new MmuNotifier(slots);
        try (HostRegion ram = HostRegion.anonymous(pages * PAGE).create(); GuestMemory gm = new GuestMemory(slots);
             FollowPfn fp = new FollowPfn(notifier, FollowPfnCollaborators.standalone())) {
            gm.addRam(0, 0x100000, ram);
            gm.writeU64(0x100000 + 8 * PAGE, 0x1122334455667788L);
            long hva = slots.current().gfnToHva((0x100000 / PAGE) + 8);
            boolean agree = hva == ram.address() + 8 * PAGE && gm.readU64(0x100000 + 8 * PAGE) == 0x1122334455667788L;
            System.out.println("WORKS memslots gfn->hva and guest memory agree=" + agree);
            FollowPfnResult r = fp.follow(FollowPfnRequest.read(0x100000 / PAGE + 8));
            System.out.println("WORKS follow_pfn ok=" + r.ok() + " pfnHidden=" + (r.pfn() == KvmPfn.HIDDEN) + " pfn0="
                    + (r.pfn() == 0) + " observability=" + r.observability());
            if (r.reference() != null) fp.releaseFaultinPage(r, false, false);
        }
        try (HostRegion r = HostRegion.anonymous(256 * 1024).mlock().create()) {
            System.out.println("WORKS mlock within RLIMIT_MEMLOCK VmLck=" + ProcStatus.self().vmLck());
        } catch (RuntimeException e) {
            System.out.println("UNEXPECTED mlock within limit " + e);
        }
        refused("kvm open", KvmVm::open);
        refused("kpageflags open", KPageFlags::open);
        refused("mlock beyond RLIMIT_MEMLOCK", () -> HostRegion.anonymous(64L << 20).mlock().create());
        refused("hugetlb pool raise", () -> HugePagePools.raise(HugePagePools.sizes().getFirst(), 1));
        System.out.println("DONE");
    }

    static void refused(String what, Supplier<? extends AutoCloseable> call) {
        try (AutoCloseable c = call.get()) {
            System.out.println("UNEXPECTED " + what + " worked");
        } catch (Exception e) {
            System.out.println("REFUSED " + what + ": " + e.getClass().getSimpleName() + ": " + e.getMessage());
        }
    }
}
