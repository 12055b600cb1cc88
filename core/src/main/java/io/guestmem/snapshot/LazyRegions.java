package io.guestmem.snapshot;

import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.sys.Userfaultfd;
import io.guestmem.vm.VmMemory;
import java.util.ArrayList;
import java.util.List;

/**
 * Memory whose pages something serves on demand, in the process that will run the guest: regions of the recorded
 * backings, registered with one userfaultfd (kernel faults too: KVM's GUP is a kernel access), MISSING for all and
 * MINOR for fd-backed ones. A lazy restore builds fresh regions ({@link #create}); a post-copy migration's
 * destination registers the regions it filled during pre-copy ({@link #register}).
 */
public final class LazyRegions {
    private final long pageSize;
    private final List<SnapshotSlot> slots;
    final List<HostRegion> regions;
    final Userfaultfd uffd;
    final long features;

    private LazyRegions(long pageSize, List<SnapshotSlot> slots, List<HostRegion> regions, Userfaultfd uffd, long features) {
        this.pageSize = pageSize;
        this.slots = List.copyOf(slots);
        this.regions = List.copyOf(regions);
        this.uffd = uffd;
        this.features = features;
    }

    /** The memfd_secret refusal and the layout checks, then the regions and the registration; nothing left on failure. */
    static LazyRegions create(SnapshotManifest m, VmMemory memory) {
        long pageSize = memory.memslots().geometry().pageSize();
        if (pageSize != m.pageSize())
            throw new SnapshotLayoutException("the snapshot's page size is " + m.pageSize() + ", this machine's " + pageSize);
        for (SnapshotSlot s : m.slots())
            if (s.addressSpace() != memory.memory().addressSpace())
                throw new SnapshotLayoutException("slot " + s.slotId() + " is in address space " + s.addressSpace());
        List<HostRegion> regions = new ArrayList<>();
        try {
            checkRegistrable(m.slots());
            for (SnapshotSlot s : m.slots()) regions.add(SnapshotRestore.create(s));
            return register(m.pageSize(), m.slots(), regions);
        } catch (RuntimeException | Error e) {
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

    /** memfd_secret memory cannot be registered with userfaultfd: refused before anything is built. */
    public static void checkRegistrable(List<SnapshotSlot> slots) {
        for (SnapshotSlot s : slots)
            if (s.backing() == Backing.SECRET)
                throw new SnapshotLayoutException("slot " + s.slotId() + " is memfd_secret memory, which userfaultfd "
                        + "cannot register: restore or migrate it eagerly");
    }

    /**
     * Registers {@code regions} (one per slot of {@code slots}, in order; they stay the caller's) with a new
     * userfaultfd. On failure the userfaultfd is closed and the regions are as they were.
     */
    public static LazyRegions register(long pageSize, List<SnapshotSlot> slots, List<HostRegion> regions) {
        checkRegistrable(slots);
        long supported;
        try (Userfaultfd probe = Userfaultfd.open(false)) {
            supported = probe.api(0).features();
        }
        long want = Userfaultfd.FEATURE_MISSING_SHMEM | Userfaultfd.FEATURE_MISSING_HUGETLBFS
                | Userfaultfd.FEATURE_MINOR_SHMEM | Userfaultfd.FEATURE_MINOR_HUGETLBFS | Userfaultfd.FEATURE_POISON
                | Userfaultfd.FEATURE_THREAD_ID;
        Userfaultfd u = Userfaultfd.open(false);
        try {
            long features = u.api(want & supported).features();
            for (int i = 0; i < regions.size(); i++) {
                HostRegion r = regions.get(i);
                long mode = Userfaultfd.MODE_MISSING;
                if (r.fd().isPresent()) {
                    long minor = r.backing().isHugetlb() ? Userfaultfd.FEATURE_MINOR_HUGETLBFS : Userfaultfd.FEATURE_MINOR_SHMEM;
                    if ((features & minor) == 0)
                        throw new SnapshotLayoutException("slot " + slots.get(i).slotId() + " (" + r.backing()
                                + "): this kernel has no userfaultfd MINOR faults on it");
                    mode |= Userfaultfd.MODE_MINOR;
                }
                u.register(r.address(), slots.get(i).size(), mode);
            }
            return new LazyRegions(pageSize, slots, regions, u, features);
        } catch (RuntimeException | Error e) {
            u.close(); // closing the userfaultfd unregisters every range
            throw e;
        }
    }

    /** The userfaultfd the regions are registered with; closing it unregisters them. */
    public Userfaultfd uffd() {
        return uffd;
    }

    /** Whether a block that cannot be served can be poisoned ({@code UFFDIO_POISON}). */
    public boolean canPoison() {
        return (features & Userfaultfd.FEATURE_POISON) != 0;
    }

    /** The ranges as this process sees them (its own descriptors), one per slot, in order. */
    public List<UffdPageServer.Range> ranges() {
        List<UffdPageServer.Range> out = new ArrayList<>();
        for (int i = 0; i < regions.size(); i++) out.add(range(i, regions.get(i).fd().isPresent() ? regions.get(i).fd().getAsInt() : -1));
        return out;
    }

    UffdPageServer.Range range(int i, int fd) {
        SnapshotSlot s = slots.get(i);
        HostRegion r = regions.get(i);
        return new UffdPageServer.Range(s.slotId(), s.gpa() / pageSize, r.address(), s.size(), r.pageSize(), fd,
                r.fdOffset(), r.backing().isHugetlb());
    }

    /** The recorded slots, over the regions, into {@code memory} (and its VM). */
    void addSlots(VmMemory memory) {
        for (int i = 0; i < regions.size(); i++) {
            SnapshotSlot s = slots.get(i);
            memory.memory().addRam(s.slotId(), s.gpa(), regions.get(i), 0, s.size(), s.memslotFlags());
        }
    }

    List<Integer> slotIds() {
        return slots.stream().map(SnapshotSlot::slotId).toList();
    }
}
