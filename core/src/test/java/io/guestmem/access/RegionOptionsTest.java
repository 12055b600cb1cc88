package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.host.HugePageSize;
import io.guestmem.kvm.KvmAvailable;
import io.guestmem.kvm.KvmGuestMemfd;
import io.guestmem.kvm.KvmVm;
import io.guestmem.memslot.Memslots;
import io.guestmem.procfs.Maps;
import io.guestmem.procfs.MapsEntry;
import io.guestmem.procfs.Smaps;
import io.guestmem.procfs.Vma;
import io.guestmem.procfs.VmFlag;
import io.guestmem.sys.Capabilities;
import io.guestmem.sys.Mempolicy;
import io.guestmem.sys.Posix;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * The region options a VMM exposes, seen through GuestMemory and checked in the kernel's own
 * files: NUMA policy in /proc/self/numa_maps, DONTDUMP and MERGEABLE in smaps VmFlags, PROT_NONE guard pages
 * in /proc/self/maps, and the vhost-user memory table shared with a child JVM.
 */
class RegionOptionsTest {
    static final long MiB = 1 << 20;
    static final long P = Posix.PAGE_SIZE;

    static String numaMapsLine(long start) throws IOException {
        String prefix = Long.toHexString(start) + " ";
        return Files.readAllLines(Path.of("/proc/self/numa_maps")).stream().filter(l -> l.startsWith(prefix))
                .findFirst().orElseThrow(() -> new AssertionError("no numa_maps line for " + prefix));
    }

    @Test
    void numaPolicyPerRegionShowsInNumaMaps() throws IOException {
        BitSet node0 = new BitSet();
        node0.set(0);
        record Case(Mempolicy.Mode mode, String shown) {}
        List<Case> cases = List.of(new Case(Mempolicy.Mode.BIND, "bind:0"), new Case(Mempolicy.Mode.PREFERRED, "prefer:0"),
                new Case(Mempolicy.Mode.INTERLEAVE, "interleave:0"));
        Memslots slots = new Memslots();
        GuestMemory gm = new GuestMemory(slots);
        int id = 0;
        for (Case c : cases) {
            try (HostRegion r = HostRegion.anonymous(MiB).numa(c.mode(), node0).create()) {
                long gpa = id * 2 * MiB;
                gm.addRam(id, gpa, r);
                gm.fill(gpa, 16 * P, (byte) 1); // fault 16 pages in through the API
                String line = numaMapsLine(r.address());
                assertTrue(line.contains(" " + c.shown() + " "), c.mode() + ": " + line);
                assertTrue(line.contains(" N0=16"), "the 16 pages written through GuestMemory are on node 0: " + line);
                assertEquals(c.mode(), Mempolicy.policyOf(r.address()).mode());
                gm.removeRam(id++);
            }
        }
        gm.close();
    }

    @Test
    void dontDumpAndMergeableShowInSmapsVmFlags() {
        try (HostRegion r = HostRegion.anonymous(2 * MiB).dontDump().mergeable().create();
             HostRegion plain = HostRegion.anonymous(MiB).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(0, 0, r);
            gm.addRam(1, 4 * MiB, plain);
            gm.writeU64(MiB, 1);
            Vma v = Smaps.vmaOf(gm.memslotSet().byId(0).userspaceAddr());
            assertTrue(v.has(VmFlag.DONTDUMP), "dd: " + v.vmFlags());
            assertTrue(v.has(VmFlag.MERGEABLE), "mg: " + v.vmFlags());
            Vma w = Smaps.vmaOf(gm.memslotSet().byId(1).userspaceAddr());
            assertFalse(w.has(VmFlag.DONTDUMP) || w.has(VmFlag.MERGEABLE), "only where asked: " + w.vmFlags());
            gm.close();
        }
    }

    @Test
    void guardPagesAroundEveryRegionAndTheLibraryRefusesGpasPastASlot() {
        try (HostRegion r1 = HostRegion.anonymous(MiB).create(); HostRegion r2 = HostRegion.memfd(MiB).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(0, 0, r1);
            gm.addRam(1, 2 * MiB, r2);
            for (HostRegion r : List.of(r1, r2)) {
                assertTrue(r.guardBytes() >= P);
                MapsEntry before = Maps.find(Posix.getpid(), r.address() - 1);
                MapsEntry after = Maps.find(Posix.getpid(), r.address() + r.size());
                assertNotNull(before, "a mapping right below " + r);
                assertNotNull(after, "a mapping right above " + r);
                assertEquals("---p", before.perms(), "PROT_NONE below: " + before);
                assertEquals("---p", after.perms(), "PROT_NONE above: " + after);
                assertTrue(before.end() == r.address() && after.start() == r.address() + r.size());
            }
            // the slot ends where the region ends: one byte further is the guard in the host, and no RAM to the library
            gm.writeU8(MiB - 1, 1);
            PartialAccessException e = assertThrows(PartialAccessException.class, () -> gm.writeU8(MiB, 1));
            assertEquals(MiB, e.firstBadGpa());
            assertThrows(PartialAccessException.class, () -> gm.slice(MiB - 8, 9));
            assertThrows(PartialAccessException.class, () -> gm.readU64(3 * MiB - 4));
            assertThrows(IndexOutOfBoundsException.class, () -> gm.slice(MiB - 8, 8).readU8(8),
                    "a slice cannot reach the guard either");
            gm.close();
        }
    }

    // ------------------------------------------------------------------ sharing (vhost-user memory table)

    private static String runChild(SharedRegion row, long readAt, long writeAt, long value) throws Exception {
        String java = ProcessHandle.current().info().command().orElse(System.getProperty("java.home") + "/bin/java");
        // a class-path child, like the test: native access for the unnamed module
        Process p = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                SharedMemoryChild.class.getName(), Integer.toString(Posix.getpid()), Integer.toString(row.fd()),
                Long.toString(row.fdOffset()), Long.toString(row.size()), Long.toString(readAt), Long.toString(writeAt),
                Long.toHexString(value), Long.toString(row.backing() == Backing.MEMFD_HUGETLB ? row.size() : 0)).redirectErrorStream(true).start();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS), "child finished");
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertEquals(0, p.exitValue(), out);
        return out;
    }

    @Test
    void memfdSlotsAreSharedWithAChildBothWays() throws Exception {
        try (HostRegion m = HostRegion.memfd(4 * MiB).create(); HostRegion anon = HostRegion.anonymous(MiB).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(0, 0, anon);                          // not shareable: absent from the table
            gm.addRam(1, 16 * MiB, m, 0, 2 * MiB, 0);       // first half of the memfd
            gm.addRam(2, 32 * MiB, m, 2 * MiB, 2 * MiB, 0); // second half, elsewhere in the guest
            List<SharedRegion> table = gm.sharedRegions();
            assertEquals(2, table.size(), table.toString());
            SharedRegion hi = table.get(1);
            assertEquals(new SharedRegion(2, 32 * MiB, 2 * MiB, m.address() + 2 * MiB, m.fd().orElseThrow(), 2 * MiB, Backing.MEMFD), hi);
            gm.writeU64(32 * MiB + 0x100, 0x1122334455667788L);
            assertEquals("1122334455667788", runChild(hi, 0x100, 0x108, 0xc0ffeeL));
            assertEquals(0xc0ffeeL, gm.readU64(32 * MiB + 0x108), "the child's write, seen through GuestMemory");
            gm.close();
        }
    }

    @Test
    void hugetlbMemfdSlotIsSharedWithAChild() throws Exception {
        assumeTrue(HugePagePools.sizes().stream().anyMatch(s -> s.bytes() == 2 * MiB), "no 2M hugetlb pool");
        assumeTrue(Capabilities.has(Capabilities.CAP_SYS_ADMIN), "raising the pool needs root");
        HugePageSize twoM = HugePagePools.size(2 * MiB);
        try (HugePagePools.Reservation res = HugePagePools.raise(twoM, 1);
             HostRegion r = HostRegion.memfdHugetlb(2 * MiB, twoM).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(0, 0x8000_0000L, r); // one 2M page: its size is the hugetlb page size passed to the child
            SharedRegion row = gm.sharedRegions().getFirst();
            assertEquals(Backing.MEMFD_HUGETLB, row.backing());
            gm.writeU64(0x8000_0000L + MiB, 0xabcdefL);
            assertEquals("abcdef", runChild(row, MiB, MiB + 8, 0x42L));
            assertEquals(0x42L, gm.readU64(0x8000_0000L + MiB + 8));
            gm.close();
        }
    }

    @Test
    void guestMemfdWithMmapIsSharedWithAChild() throws Exception {
        KvmAvailable.assume();
        try (KvmVm vm = KvmVm.open()) {
            assumeTrue(vm.capabilities().guestMemfd(), "this KVM has no guest_memfd");
            KvmGuestMemfd gmem = vm.createGuestMemfd(2 * MiB);
            assumeTrue(gmem.mmapShared(), "this KVM cannot mmap guest_memfd");
            try (HostRegion r = HostRegion.ofFd(gmem.fd(), 0, 2 * MiB, Backing.GUEST_MEMFD).create()) {
                Memslots slots = new Memslots();
                GuestMemory gm = new GuestMemory(slots);
                gm.register(r);
                slots.setMemslot(0, 0, io.guestmem.memslot.Memslot.GUEST_MEMFD, 0, 2 * MiB, r.address(), gmem.fd(), 0);
                SharedRegion row = gm.sharedRegions().getFirst();
                assertEquals(Backing.GUEST_MEMFD, row.backing());
                assertEquals(gmem.fd(), row.fd());
                gm.writeU64(0x3000, 0x5eedL);
                assertEquals("5eed", runChild(row, 0x3000, 0x3008, 0x77L));
                assertEquals(0x77L, gm.readU64(0x3008));
                gm.close();
            }
        }
    }
}
