package io.guestmem.vm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.guestmem.gmem.GuestMemfdBacking;
import io.guestmem.gmem.GuestMemfdRegion;
import io.guestmem.kvm.KvmAvailable;
import io.guestmem.kvm.KvmVm;
import io.guestmem.mmu.FollowPfn;
import io.guestmem.mmu.FollowPfnRequest;
import io.guestmem.mmu.FollowPfnResult;
import io.guestmem.mmu.GuestMemfdResolution;
import io.guestmem.mmu.GuestMemfdResolution.Residency;
import io.guestmem.mmu.KvmPfn;
import io.guestmem.mmu.Mappability;
import io.guestmem.mmu.MappingLevel;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.mmu.PfnError;
import io.guestmem.mmu.PfnObservability;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import java.util.function.Function;
import org.junit.jupiter.api.Test;

/**
 * FOLL_GUEST on a private guest_memfd page resolves the page through the guest_memfd's file and offset, as
 * {@code kvm_gmem_get_pfn} does, and never faults it into the host: the host mapping's pte stays absent
 * (the test's own pagemap read), the folio exists afterwards (for the stand-in, shmem's block count of the file),
 * and a later conversion to private, which refuses a host-mapped page with EAGAIN, still succeeds. Over the
 * memfd stand-in here, and over a real guest_memfd where /dev/kvm offers one (the arm64 runner).
 */
class FollGuestPrivateTest {
    static final long P = Posix.PAGE_SIZE;
    static final long BASE = 0x4000_0000L;

    @Test
    void standInPrivatePageIsResolvedThroughTheMemfd() {
        privateLookupNeverMapsTheHost(n -> GuestMemfdRegion.standIn(4 * P, n), GuestMemfdBacking.MEMFD_STAND_IN);
    }

    @Test
    void guestMemfdPrivatePageIsResolvedThroughTheGuestMemfd() {
        KvmAvailable.assume();
        try (KvmVm kvm = KvmVm.open()) {
            assumeTrue(kvm.capabilities().guestMemfd() && kvm.capabilities().guestMemfdMmapShared(),
                    "this KVM has no guest_memfd with MMAP|INIT_SHARED");
            privateLookupNeverMapsTheHost(n -> GuestMemfdRegion.create(kvm, 4 * P, n), GuestMemfdBacking.GUEST_MEMFD);
        }
    }

    /**
     * A guest_memfd without MMAP has no host mapping at all (slot userspace_addr 0): before, FOLL_GUEST went to
     * the hva and found no VMA (FAULT); through the file it resolves, with residency unknown (no mapping to ask).
     */
    @Test
    void guestOnlyGuestMemfdResolvesWithoutAnyMapping() {
        KvmAvailable.assume();
        try (KvmVm kvm = KvmVm.open()) {
            assumeTrue(kvm.capabilities().guestMemfd(), "this KVM has no guest_memfd");
            try (VmMemory vm = new VmMemory();
                 GuestMemfdRegion region = GuestMemfdRegion.adopt(kvm.createGuestMemfd(4 * P, 0), vm.notifier())) {
                assertEquals(GuestMemfdBacking.GUEST_MEMFD_GUEST_ONLY, region.backing());
                vm.addGuestMemfd(1, BASE, region);
                FollowPfn fp = vm.followPfn();
                long gfn = BASE / P + 1;
                assertEquals(Mappability.GUEST, region.mappability(P));
                assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.read(gfn)).error(), "private: not without FOLL_GUEST");
                FollowPfnResult g = fp.follow(FollowPfnRequest.write(gfn).withGuest(true));
                System.out.println("guest-only guest_memfd, FOLL_GUEST: " + g);
                assertPrivateResolution(g, region, P);
                assertEquals(Residency.UNKNOWN, g.guestMemfd().residentBefore(), "no host mapping to run mincore on");
                assertEquals(1, region.references(P));
                fp.releaseFaultinPage(g, false, true);
                assertEquals(0, region.references(P));
            }
        }
    }

    /** {@code regionBehind} makes the region behind the given notifier (the VmMemory's, as addGuestMemfd requires). */
    private static void privateLookupNeverMapsTheHost(Function<MmuNotifier, GuestMemfdRegion> regionBehind,
                                                      GuestMemfdBacking expected) {
        try (VmMemory vm = new VmMemory(); Pagemap pm = Pagemap.openSelf();
             GuestMemfdRegion region = regionBehind.apply(vm.notifier())) {
            assertEquals(expected, region.backing());
            vm.addGuestMemfd(1, BASE, region);
            FollowPfn fp = vm.followPfn();
            long host = region.hostAddress();
            long g2 = BASE / P + 2, g3 = g2 + 1;
            // page 2 holds data written while shared; page 3 was never touched
            vm.memory().writeU64(BASE + 2 * P, 0x5eed_5eedL);
            region.zapHostMapping(2 * P, 2 * P);
            assertTrue(region.toPrivate(2 * P, 2 * P).isComplete());
            assertFalse(PagemapEntry.isPresent(pm.readRaw(host + 2 * P)));
            assertEquals(1, Mman.residentPages(host + 2 * P, P), "mincore: page 2 is in the page cache, unmapped");
            assertEquals(0, Mman.residentPages(host + 3 * P, P), "mincore: page 3 was never allocated");
            long blocksBefore = region.backing() == GuestMemfdBacking.MEMFD_STAND_IN ? blocks(region.fd()) : -1;

            FollowPfnResult a = fp.follow(FollowPfnRequest.read(g2).withGuest(true).withLevel(true));
            FollowPfnResult b = fp.follow(FollowPfnRequest.write(g3).withGuest(true));
            System.out.println(region.backing() + ", FOLL_GUEST: " + a + " / " + b);
            assertPrivateResolution(a, region, 2 * P);
            assertPrivateResolution(b, region, 3 * P);
            assertEquals(MappingLevel.PAGE, a.level());
            assertEquals(Residency.RESIDENT, a.guestMemfd().residentBefore());
            assertEquals(Residency.NOT_RESIDENT, b.guestMemfd().residentBefore());

            // the host pte stays absent; the folio the lookup needed exists
            assertFalse(PagemapEntry.isPresent(pm.readRaw(host + 2 * P)), "FOLL_GUEST mapped page 2 into the host");
            assertFalse(PagemapEntry.isPresent(pm.readRaw(host + 3 * P)), "FOLL_GUEST mapped page 3 into the host");
            if (region.backing() == GuestMemfdBacking.MEMFD_STAND_IN) {
                // shmem counts the fallocated folio in the inode's blocks (mincore does not: it is not uptodate)
                assertEquals(blocksBefore + P / 512, blocks(region.fd()), "page 3 was allocated in the file, not mapped");
            }
            assertEquals(1, region.references(2 * P), "the lookup holds the page's reference");
            assertEquals(1, region.references(3 * P));

            // a conversion to private (which refuses a host-mapped page with EAGAIN) still succeeds, held or not
            assertTrue(region.toPrivate(2 * P, 2 * P).isComplete());
            fp.releaseFaultinPage(a, false, false);
            fp.releaseFaultinPage(b, false, true);
            assertEquals(0, region.references(2 * P) + region.references(3 * P));
            assertTrue(region.toPrivate(2 * P, 2 * P).isComplete());
            assertFalse(PagemapEntry.isPresent(pm.readRaw(host + 2 * P)));

            // the allocation left the present folio alone and gave the absent one zeros
            assertTrue(region.toShared(2 * P, 2 * P).isComplete());
            assertEquals(0x5eed_5eedL, vm.memory().readU64(BASE + 2 * P));
            assertEquals(0, vm.memory().readU64(BASE + 3 * P));
        }
    }

    /** st_blocks of the file behind our fd, as the kernel accounts it (stat(1) through /proc/PID/fd). */
    private static long blocks(int fd) {
        try {
            Process p = new ProcessBuilder("stat", "-L", "-c", "%b", "/proc/" + ProcessHandle.current().pid() + "/fd/" + fd)
                    .redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes()).trim();
            assertEquals(0, p.waitFor(), out);
            return Long.parseLong(out);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    private static void assertPrivateResolution(FollowPfnResult r, GuestMemfdRegion region, long offset) {
        assertTrue(r.ok(), r::toString);
        assertEquals(FollowPfnResult.Path.GUEST_MEMFD, r.path());
        assertEquals(KvmPfn.GUEST_MEMFD_PRIVATE, r.pfn(), "the pfn is not observable, and never 0");
        assertFalse(KvmPfn.isRealPfn(r.pfn()));
        assertEquals(PfnObservability.GUEST_MEMFD_PRIVATE, r.observability());
        assertTrue(r.writable(), "private pages are mapped writable (not a READONLY slot)");
        assertNotNull(r.reference());
        assertTrue(r.reference().guest(), "a reference of the private view");
        GuestMemfdResolution gm = r.guestMemfd();
        assertNotNull(gm, r::toString);
        assertEquals(region.fd(), gm.fd(), "resolved through the region's file");
        assertEquals(offset, gm.offset());
    }
}
