package io.guestmem.vm;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.guestmem.access.DirtyPages;
import io.guestmem.access.PrivateMemoryException;
import io.guestmem.gmem.Conversion;
import io.guestmem.gmem.GuestMemfdBacking;
import io.guestmem.gmem.GuestMemfdRegion;
import io.guestmem.mmu.Mappability;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.kvm.KvmVm;
import io.guestmem.lock.LockMode;
import io.guestmem.memslot.Memslot;
import io.guestmem.mmu.FollowPfn;
import io.guestmem.mmu.FollowPfnRequest;
import io.guestmem.mmu.FollowPfnResult;
import io.guestmem.mmu.MappingLevel;
import io.guestmem.mmu.PfnError;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.sys.Posix;
import org.junit.jupiter.api.Test;

/** Each connection VmMemory makes, on real memory (and a real guest_memfd). */
class VmMemoryTest {
    static final long P = Posix.PAGE_SIZE;
    static final long MiB = 1 << 20;

    @Test
    void lockedSlotMapsAt4kAndWriteFaultRelaxesReadLock() {
        long pmd = HugePagePools.thpSize();
        try (HostRegion r = HostRegion.thp(2 * pmd).create(); VmMemory vm = new VmMemory()) {
            Memslot s = vm.memory().addRam(0, 0, r);
            FollowPfn fp = vm.followPfn();
            long gfn = pmd / P + 5;
            FollowPfnResult w = fp.follow(FollowPfnRequest.write(gfn).withLevel(true));
            assertTrue(w.ok(), w.toString());
            fp.releaseFaultinPage(w, false, true);
            assertEquals(MappingLevel.PMD, w.level(), "THP-backed");
            assertEquals(MappingLevel.PMD, fp.levels().maxMappingLevel(s, gfn), "unlocked: 2M");

            vm.lock().lockMemslot(0, LockMode.READ);
            assertEquals(MappingLevel.PAGE, fp.levels().maxMappingLevel(s, gfn), "locked: 4K only");
            long g = gfn + 1;
            assertFalse(vm.lock().stage2Writable(0, g), "READ lock records read-only entries");
            FollowPfnResult w2 = fp.follow(FollowPfnRequest.write(g));
            assertTrue(w2.ok(), w2.toString());
            try (Pagemap pm = Pagemap.openSelf()) {
                assertEquals(PagemapEntry.pfn(pm.readRaw(s.userspaceAddr() + g * P), true), w2.pfn(), "pfn is pagemap's");
            }
            fp.releaseFaultinPage(w2, false, true);
            assertTrue(vm.lock().stage2Writable(0, g), "write fault relaxed the entry");
            assertFalse(vm.lock().stage2Writable(0, g + 1), "only that entry");
            vm.lock().unlockMemslot(0);
            assertEquals(MappingLevel.PMD, fp.levels().maxMappingLevel(s, gfn), "unlocked again: 2M");
        }
    }

    @Test
    void dirtyReleasesReachTheBitmapAndALoggingSlotCannotBeWriteLocked() {
        long size = 64 * P;
        try (HostRegion r = HostRegion.anonymous(size).create(); VmMemory vm = new VmMemory()) {
            Memslot s = vm.memory().addRam(0, 0, r, 0, size, Memslot.LOG_DIRTY_PAGES);
            FollowPfn fp = vm.followPfn();
            FollowPfnResult w = fp.follow(FollowPfnRequest.write(3));
            assertTrue(w.ok(), w.toString());
            fp.releaseFaultinPage(w, false, true);
            FollowPfnResult clean = fp.follow(FollowPfnRequest.write(4));
            fp.releaseFaultinPage(clean, false, false);
            DirtyPages d = vm.memory().collectDirty(0);
            assertTrue(d.contains(3), d.toString());
            assertFalse(d.contains(4), "a clean release marks nothing");
            assertEquals(1, d.count());

            // "KVM: arm64: Add lock/unlock memslot user API": a write lock of a dirty-logging slot is EPERM, so no
            // unlock has a whole slot of dirty pages to report; a READ lock is allowed and reports nothing.
            io.guestmem.KvmException e = org.junit.jupiter.api.Assertions.assertThrows(io.guestmem.KvmException.class,
                    () -> vm.lock().lockMemslot(0, LockMode.READ_WRITE));
            assertEquals(io.guestmem.sys.Errno.EPERM, e.errno(), e.getMessage());
            vm.lock().lockMemslot(0, LockMode.READ);
            assertEquals(0, vm.memory().collectDirty(0).count());
            vm.lock().unlockMemslot(0);
            assertEquals(0, vm.memory().collectDirty(0).count(), "unlocking a READ lock dirties nothing");
            FollowPfnResult w3 = fp.follow(FollowPfnRequest.write(7));
            fp.releaseFaultinPage(w3, false, true);
            assertTrue(vm.memory().collectDirty(0).contains(7), "dirty releases still reach the bitmap");
        }
    }

    /**
     * The same connections without KVM, over a memfd standing in for the guest_memfd: follow_pfn's references
     * are the page states' references, the last release is the deferred final put (not an earlier one), and a
     * conversion with nothing held completes at once.
     */
    /**
     * A region created behind no notifier (or another VM's) would convert pages without invalidating this
     * VM's translations: it is refused before anything is bound, and one made by createGuestMemfd joins.
     */
    @Test
    void aGuestMemfdRegionJoinsOnlyBehindThisMemorysNotifier() {
        try (VmMemory vm = new VmMemory(); VmMemory other = new VmMemory();
             GuestMemfdRegion alone = GuestMemfdRegion.standIn(4 * P);
             GuestMemfdRegion foreign = other.createGuestMemfd(4 * P);
             GuestMemfdRegion own = vm.createGuestMemfd(4 * P)) {
            for (GuestMemfdRegion r : java.util.List.of(alone, foreign)) {
                io.guestmem.KvmException e = assertThrows(io.guestmem.KvmException.class,
                        () -> vm.addGuestMemfd(1, 0x4000_0000L, r));
                assertEquals(io.guestmem.sys.Errno.EINVAL, e.errno(), e.getMessage());
                assertTrue(vm.memslots().current(0).byId(1) == null, "nothing bound after the refusal");
            }
            assertSame(vm.notifier(), own.notifier());
            assertEquals(1, vm.addGuestMemfd(1, 0x4000_0000L, own).id());
        }
    }

    /**
     * A stand-in's slot is a plain slot (a memfd, no GUEST_MEMFD flag), yet its private pages are as private
     * to the accessors as a real guest_memfd's: a read or write of one is a PrivateMemoryException, before
     * anything is touched, and its shared neighbours stay accessible.
     */
    @Test
    void theAccessorsRefuseAStandInsPrivatePages() {
        try (VmMemory vm = new VmMemory(); GuestMemfdRegion region = vm.createGuestMemfd(4 * P)) {
            assertEquals(GuestMemfdBacking.MEMFD_STAND_IN, region.backing());
            long base = 0x4000_0000L;
            vm.addGuestMemfd(1, base, region);
            vm.memory().writeU64(base + 2 * P, 0x1234);
            region.zapHostMapping(2 * P, P);
            assertTrue(region.toPrivate(2 * P, P).isComplete());
            io.guestmem.access.PrivateMemoryException r = assertThrows(io.guestmem.access.PrivateMemoryException.class,
                    () -> vm.memory().readU64(base + 2 * P));
            assertEquals(base / P + 2, r.gfn(), r.getMessage());
            assertThrows(io.guestmem.access.PrivateMemoryException.class, () -> vm.memory().writeU64(base + 2 * P, 1));
            assertThrows(io.guestmem.access.PrivateMemoryException.class,
                    () -> vm.memory().write(base + P, new byte[(int) (2 * P)]), "a write that reaches the private page");
            assertEquals(0, vm.memory().readU64(base + 3 * P), "a shared neighbour stays accessible");
            vm.memory().writeU64(base + P, 7);
            assertEquals(7, vm.memory().readU64(base + P));
            region.toShared(2 * P, P);
            assertEquals(0x1234, vm.memory().readU64(base + 2 * P), "shared again: the contents are back");
        }
    }

    @Test
    void followPfnReleasesAreTheFinalPutOnAStandIn() {
        try (VmMemory vm = new VmMemory(); GuestMemfdRegion region = GuestMemfdRegion.standIn(4 * P, vm.notifier())) {
            assertEquals(GuestMemfdBacking.MEMFD_STAND_IN, region.backing());
            long base = 0x4000_0000L;
            vm.addGuestMemfd(1, base, region);
            java.util.List<String> finalPuts = new java.util.concurrent.CopyOnWriteArrayList<>();
            region.addFinalPutListener((r, off, now) -> finalPuts.add(off + ":" + now));
            FollowPfn fp = vm.followPfn();
            long gfn = base / P + 2;

            FollowPfnResult a = fp.follow(FollowPfnRequest.read(gfn));
            FollowPfnResult b = fp.follow(FollowPfnRequest.write(gfn));
            assertTrue(a.ok() && b.ok(), a + " " + b);
            try (Pagemap pm = Pagemap.openSelf()) {
                assertEquals(PagemapEntry.pfn(pm.readRaw(region.hostAddress() + 2 * P), true), b.pfn(), "pfn is pagemap's");
            }
            assertEquals(2, region.references(2 * P), "each follow_pfn reference is a page-state reference");
            assertEquals(2, fp.references().count(gfn));
            assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.read(gfn).withGuest(true)).error(), "shared: not in the private view");

            region.zapHostMapping(2 * P, P);
            Conversion c = region.toPrivate(2 * P, P);
            assertEquals(1, c.pending(), c.toString());
            assertEquals(Mappability.NONE, region.mappability(2 * P));
            assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.read(gfn)).error(), "converting: nobody");
            assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.read(gfn).withGuest(true)).error(), "converting: nobody");
            fp.releaseFaultinPage(a, false, false);
            assertEquals(Mappability.NONE, region.mappability(2 * P), "one reference still held");
            assertTrue(finalPuts.isEmpty(), "no final put before the last release");
            fp.releaseFaultinPage(b, false, true);
            assertEquals(Mappability.GUEST, region.mappability(2 * P), "the last follow_pfn release completed it");
            assertEquals(java.util.List.of(2 * P + ":GUEST"), finalPuts, "the deferred final put ran once, at the last release");
            assertEquals(0, region.references(2 * P));
            assertFalse(fp.references().holds(gfn));

            // A private reference, then back to shared: deferred the other way.
            FollowPfnResult g = fp.follow(FollowPfnRequest.read(gfn).withGuest(true));
            assertTrue(g.ok(), g.toString());
            assertTrue(g.reference().guest());
            assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.read(gfn)).error(), "private: not without FOLL_GUEST");
            assertEquals(1, region.toShared(2 * P, P).pending());
            fp.releaseFaultinPage(g, false, false);
            assertEquals(Mappability.ALL, region.mappability(2 * P));
            assertEquals(2, finalPuts.size());

            // Nothing held: the conversion completes at once, with no final put.
            assertTrue(region.toPrivate(3 * P, P).isComplete());
            assertEquals(Mappability.GUEST, region.mappability(3 * P));
            assertEquals(2, finalPuts.size());
        }
    }

    @Test
    void privateMemoryOneStateMachine() {
        assumeTrue(new java.io.File("/dev/kvm").exists(), "no /dev/kvm");
        try (KvmVm kvm = KvmVm.open()) {
            assumeTrue(kvm.capabilities().guestMemfd() && kvm.capabilities().guestMemfdMmapShared(),
                    "this KVM has no guest_memfd with MMAP|INIT_SHARED");
            try (VmMemory vm = new VmMemory(kvm); GuestMemfdRegion region = vm.createGuestMemfd(2 * MiB)) {
                assertEquals(GuestMemfdBacking.GUEST_MEMFD, region.backing());
                long base = 0x4000_0000L;
                vm.addGuestMemfd(1, base, region);
                assertNotNull(kvm.mirroredSlots().get(1), "mirrored into KVM");
                FollowPfn fp = vm.followPfn();
                long gfn = base / P + 2;
                vm.memory().writeU64(base + 2 * P, 0x1234);

                FollowPfnResult held = fp.follow(FollowPfnRequest.read(gfn));
                assertTrue(held.ok(), held.toString());
                assertEquals(1, region.references(2 * P), "the follow_pfn reference is a guest_memfd reference");
                assertTrue(fp.follow(FollowPfnRequest.read(gfn).withGuest(true)).isError(), "shared page not in the private view");

                region.zapHostMapping(2 * P, P);
                Conversion c = region.toPrivate(2 * P, P);
                assertEquals(1, c.pending(), c.toString());
                assertEquals(Mappability.NONE, region.mappability(2 * P), "pending while referenced");
                assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.read(gfn)).error(), "converting: nobody");
                fp.releaseFaultinPage(held, false, false);
                assertEquals(Mappability.GUEST, region.mappability(2 * P), "final follow_pfn release completed it");
                assertEquals(0, region.references(2 * P));

                PrivateMemoryException e = assertThrows(PrivateMemoryException.class, () -> vm.memory().readU64(base + 2 * P));
                assertEquals(gfn, e.gfn());
                assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.read(gfn)).error(), "private: not without FOLL_GUEST");
                FollowPfnResult g = fp.follow(FollowPfnRequest.read(gfn).withGuest(true));
                assertTrue(g.ok(), g.toString());
                assertEquals(1, region.references(2 * P), "a private reference");
                fp.releaseFaultinPage(g, false, false);
                assertEquals(0, region.references(2 * P));

                // one poison path: the VM's poison registry is follow_pfn's HWPOISON
                FollowPfnResult sh = fp.follow(FollowPfnRequest.read(gfn + 1));
                assertTrue(sh.ok(), sh.toString());
                try (Pagemap pm = Pagemap.openSelf()) {
                    assertEquals(PagemapEntry.pfn(pm.readRaw(region.hostAddress() + 3 * P), true), sh.pfn(), "pfn is pagemap's");
                }
                fp.releaseFaultinPage(sh, false, false);
                vm.poison().poisonPfn(sh.pfn());
                assertEquals(PfnError.HWPOISON, fp.follow(FollowPfnRequest.read(gfn + 1)).error());
                vm.poison().unpoisonPfn(sh.pfn());
                FollowPfnResult again = fp.follow(FollowPfnRequest.read(gfn + 1));
                assertTrue(again.ok());
                fp.releaseFaultinPage(again, false, false);
                assertEquals(0, vm.memory().readU64(base + 3 * P), "shared pages stay accessible");
            }
        }
    }
}
