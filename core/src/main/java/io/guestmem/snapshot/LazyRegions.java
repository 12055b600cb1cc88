package io.guestmem.snapshot;

import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.sys.Userfaultfd;
import io.guestmem.vm.VmMemory;
import java.util.ArrayList;
import java.util.List;

/**
 * The memory a lazy restore starts from, in the process that will run the guest: fresh regions of the recorded
 * backings, registered with one userfaultfd (kernel faults too: KVM's GUP is a kernel access), MISSING for all
 * and MINOR for fd-backed ones. The slots are added to the memory only once something serves the faults.
 */
final class LazyRegions {
    final SnapshotManifest layout;
    final List<HostRegion> regions;
    final Userfaultfd uffd;
    final long features;

    private LazyRegions(SnapshotManifest layout, List<HostRegion> regions, Userfaultfd uffd, long features) {
        this.layout = layout;
        this.regions = regions;
        this.uffd = uffd;
        this.features = features;
    }

    /** The memfd_secret refusal and the layout checks, then the regions and the registration; nothing left on failure. */
    static LazyRegions create(SnapshotManifest m, VmMemory memory) {
        long pageSize = memory.memslots().geometry().pageSize();
        if (pageSize != m.pageSize())
            throw new SnapshotLayoutException("the snapshot's page size is " + m.pageSize() + ", this machine's " + pageSize);
        for (SnapshotSlot s : m.slots()) {
            if (s.addressSpace() != memory.memory().addressSpace())
                throw new SnapshotLayoutException("slot " + s.slotId() + " is in address space " + s.addressSpace());
            if (s.backing() == Backing.SECRET)
                throw new SnapshotLayoutException("slot " + s.slotId() + " is memfd_secret memory, which userfaultfd "
                        + "cannot register: restore it eagerly");
        }
        List<HostRegion> regions = new ArrayList<>();
        Userfaultfd u = null;
        try {
            for (SnapshotSlot s : m.slots()) regions.add(SnapshotRestore.create(s));
            long supported;
            try (Userfaultfd probe = Userfaultfd.open(false)) {
                supported = probe.api(0).features();
            }
            long want = Userfaultfd.FEATURE_MISSING_SHMEM | Userfaultfd.FEATURE_MISSING_HUGETLBFS
                    | Userfaultfd.FEATURE_MINOR_SHMEM | Userfaultfd.FEATURE_MINOR_HUGETLBFS | Userfaultfd.FEATURE_POISON
                    | Userfaultfd.FEATURE_THREAD_ID;
            u = Userfaultfd.open(false);
            long features = u.api(want & supported).features();
            for (int i = 0; i < regions.size(); i++) {
                HostRegion r = regions.get(i);
                long mode = Userfaultfd.MODE_MISSING;
                if (r.fd().isPresent()) {
                    long minor = r.backing().isHugetlb() ? Userfaultfd.FEATURE_MINOR_HUGETLBFS : Userfaultfd.FEATURE_MINOR_SHMEM;
                    if ((features & minor) == 0)
                        throw new SnapshotLayoutException("slot " + m.slots().get(i).slotId() + " (" + r.backing()
                                + "): this kernel has no userfaultfd MINOR faults on it");
                    mode |= Userfaultfd.MODE_MINOR;
                }
                u.register(r.address(), m.slots().get(i).size(), mode);
            }
            return new LazyRegions(m, regions, u, features);
        } catch (RuntimeException | Error e) {
            if (u != null) u.close();
            for (HostRegion r : regions.reversed()) {
                try {
                    r.close();
                } catch (RuntimeException suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            throw e;
        }
    }

    boolean canPoison() {
        return (features & Userfaultfd.FEATURE_POISON) != 0;
    }

    /** The ranges as this process sees them (its own descriptors). */
    List<UffdPageServer.Range> ranges() {
        List<UffdPageServer.Range> out = new ArrayList<>();
        for (int i = 0; i < regions.size(); i++) out.add(range(i, regions.get(i).fd().isPresent() ? regions.get(i).fd().getAsInt() : -1));
        return out;
    }

    UffdPageServer.Range range(int i, int fd) {
        SnapshotSlot s = layout.slots().get(i);
        HostRegion r = regions.get(i);
        return new UffdPageServer.Range(s.slotId(), s.gpa() / layout.pageSize(), r.address(), s.size(), r.pageSize(), fd,
                r.fdOffset(), r.backing().isHugetlb());
    }

    /** The recorded slots, over the regions, into {@code memory} (and its VM). */
    void addSlots(VmMemory memory) {
        for (int i = 0; i < regions.size(); i++) {
            SnapshotSlot s = layout.slots().get(i);
            memory.memory().addRam(s.slotId(), s.gpa(), regions.get(i), 0, s.size(), s.memslotFlags());
        }
    }

    List<Integer> slotIds() {
        return layout.slots().stream().map(SnapshotSlot::slotId).toList();
    }
}
