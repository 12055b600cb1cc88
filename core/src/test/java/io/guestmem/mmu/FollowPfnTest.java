package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.mmu.FollowPfnResult.Path;
import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.sys.Mman;

import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AutoClose;
import org.junit.jupiter.api.Test;

/** Each row of FollowPfn's decision table over real base-page memory, checked against pagemap/kpageflags. */
class FollowPfnTest {
    @AutoClose // unmaps its regions and closes its readers after each test
    private final Fixture f = new Fixture();
    private static final long PAGE = Fixture.PAGE;

    @Test
    void writeFaultOnAnonymousMemoryFaultsInThenIsFast() {
        HostRegion r = f.own(HostRegion.anonymous(16 * PAGE).create());
        Memslot s = f.slot(r, 0);
        long gfn = f.gfn(s, 3 * PAGE);
        assertFalse(f.present(r.address() + 3 * PAGE));

        FollowPfnResult w = f.fp.follow(FollowPfnRequest.write(gfn));
        System.out.println("first write: " + w + " flags " + KPageFlag.decode(w.page().kpageflags()));
        f.assertPfnIsPagemaps(w);
        assertEquals(Path.SLOW, w.path());
        assertTrue(w.writable());
        assertEquals(RefcountedPage.Kind.NORMAL, w.page().kind());
        assertNotNull(w.reference());
        assertEquals(1, f.fp.references().count(gfn));
        assertEquals(r.address() + 3 * PAGE, w.hva());

        FollowPfnResult again = f.fp.follow(FollowPfnRequest.write(gfn));
        assertEquals(Path.FAST, again.path(), "a present writable page is answered without faulting");
        assertEquals(w.pfn(), again.pfn());
        assertEquals(2, f.fp.references().count(gfn));
        // a read fault on it: present, fast, read-only unless mapWritable
        FollowPfnResult rd = f.fp.follow(FollowPfnRequest.read(gfn));
        assertEquals(Path.FAST, rd.path());
        assertFalse(rd.writable());
        FollowPfnResult rdw = f.fp.follow(FollowPfnRequest.read(gfn).withMapWritable(true));
        assertTrue(rdw.writable(), "mapWritable upgrades a page the host maps writable");
        assertEquals(w.pfn(), rdw.pfn());

        for (FollowPfnResult x : List.of(w, again, rd, rdw)) f.fp.releaseFaultinPage(x, false, false);
        assertFalse(f.fp.references().holds(gfn));
        assertThrows(IllegalStateException.class, () -> f.fp.releaseFaultinPage(w, false, false));
    }

    @Test
    void readFaultOnUntouchedAnonymousMemoryMapsTheZeroPage() {
        HostRegion r = f.own(HostRegion.anonymous(8 * PAGE).create());
        Memslot s = f.slot(r, 0);
        long gfn = f.gfn(s, PAGE);
        FollowPfnResult rd = f.fp.follow(FollowPfnRequest.read(gfn).withMapWritable(true));
        long flags = f.flags(rd.pfn());
        System.out.println("zero page: " + rd + " kpageflags " + KPageFlag.decode(flags));
        f.assertPfnIsPagemaps(rd);
        // Whether a read fault maps the shared zero page is the kernel's choice (this project's x86 host gave
        // private pages on 2026-12-03): read it, do not assume it.
        org.junit.jupiter.api.Assumptions.assumeTrue(KPageFlag.ZERO_PAGE.in(flags),
                "this kernel maps no zero page on a read fault: kpageflags " + KPageFlag.decode(flags));
        assertTrue(KPageFlag.ZERO_PAGE.in(flags), "kpageflags says zero page");
        assertEquals(RefcountedPage.Kind.ZERO_PAGE, rd.page().kind());
        assertFalse(rd.writable(), "the zero page is never mapped writable");
        assertEquals(rd.pfn(), f.pagemapPfn(rd.hva()), "mapWritable did not break COW of the zero page");
        // v9's kvm_pfn_to_refcounted_page: "The ZERO_PAGE(s) is marked PG_reserved, but is refcounted".
        assertEquals(RefcountedPage.Refcount.REFCOUNTED, rd.page().v9Rule(RefcountedPage.Path.REMAPPED));
        assertEquals(RefcountedPage.Refcount.REFCOUNTED, rd.page().linux613Rule(RefcountedPage.Path.GUP));
        // A write fault then breaks COW: a new, writable, normal page.
        FollowPfnResult w = f.fp.follow(FollowPfnRequest.write(gfn));
        f.assertPfnIsPagemaps(w);
        assertNotEquals(rd.pfn(), w.pfn());
        assertEquals(Path.SLOW, w.path());
        assertEquals(RefcountedPage.Kind.NORMAL, w.page().kind());
    }

    @Test
    void noWaitOnANonPresentPageNeedsIoAndLeavesItAlone() {
        HostRegion r = f.own(HostRegion.anonymous(4 * PAGE).create());
        Memslot s = f.slot(r, 0);
        long gfn = f.gfn(s, 2 * PAGE);
        for (boolean write : new boolean[] {false, true}) {
            FollowPfnResult x = f.fp.follow(FollowPfnRequest.read(gfn).withWrite(write).withNoWait(true));
            assertEquals(PfnError.NEEDS_IO, x.error(), x::toString);
            assertEquals(KvmPfn.ERR_NEEDS_IO, x.pfn());
            assertFalse(f.present(r.address() + 2 * PAGE), "noWait faulted the page in");
        }
        r.segment().set(ValueLayout.JAVA_BYTE, 2 * PAGE, (byte) 7);
        FollowPfnResult ok = f.fp.follow(FollowPfnRequest.read(gfn).withNoWait(true));
        f.assertPfnIsPagemaps(ok);
        assertEquals(Path.FAST, ok.path());
    }

    @Test
    void noSlotAndReadOnlySlot() {
        HostRegion r = f.own(HostRegion.anonymous(4 * PAGE).create());
        Memslot s = f.slot(r, Memslot.READONLY);
        FollowPfnResult none = f.fp.follow(FollowPfnRequest.read(s.endGfn() + 5));
        assertEquals(PfnError.NOSLOT, none.error());
        assertEquals(KvmPfn.NOSLOT, none.pfn());
        assertEquals(MemslotSet.BAD_HVA, none.hva());

        FollowPfnResult ro = f.fp.follow(FollowPfnRequest.write(s.baseGfn()));
        assertEquals(PfnError.RO_FAULT, ro.error());
        assertEquals(KvmPfn.ERR_RO_FAULT, ro.pfn());
        assertEquals(MemslotSet.RO_BAD_HVA, ro.hva());
        assertFalse(f.present(r.address()), "a refused write touched nothing");

        r.segment().set(ValueLayout.JAVA_BYTE, 0, (byte) 1); // host-writable page
        FollowPfnResult rd = f.fp.follow(FollowPfnRequest.read(s.baseGfn()).withMapWritable(true));
        f.assertPfnIsPagemaps(rd);
        assertFalse(rd.writable(), "a READONLY slot clears map_writable");

        // a slot taken from an older set is invalid once deleted: NOSLOT
        f.memslots.deleteMemslot(0, s.id());
        FollowPfnResult gone = f.fp.follow(FollowPfnRequest.read(s.baseGfn()).withSlot(s));
        assertEquals(PfnError.NOSLOT, gone.error());
        f.fp.releaseFaultinPage(rd, true, false);
    }

    @Test
    void readOnlyVmaAndProtNone() {
        HostRegion r = f.own(HostRegion.anonymous(4 * PAGE).create());
        Memslot s = f.slot(r, 0);
        r.segment().set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
        try (Invalidation inv = f.notifier.invalidate(r.address(), r.address() + 2 * PAGE)) {
            Mman.mprotect(r.address(), 2 * PAGE, Mman.PROT_READ);
        }
        try (Invalidation inv = f.notifier.invalidate(r.address() + 2 * PAGE, r.address() + 4 * PAGE)) {
            Mman.mprotect(r.address() + 2 * PAGE, 2 * PAGE, Mman.PROT_NONE);
        }
        long g0 = s.baseGfn();
        // write on a present page of a read-only VMA: GUP fails, the VMA is no PFNMAP → KVM_PFN_ERR_FAULT
        FollowPfnResult w = f.fp.follow(FollowPfnRequest.write(g0));
        assertEquals(PfnError.FAULT, w.error(), w::toString);
        assertEquals(Path.VMA, w.path());
        // write on a non-present page of it: same
        assertEquals(PfnError.FAULT, f.fp.follow(FollowPfnRequest.write(g0 + 1)).error());
        assertFalse(f.present(r.address() + PAGE));
        // reads work; mapWritable is honestly refused
        FollowPfnResult rd = f.fp.follow(FollowPfnRequest.read(g0).withMapWritable(true));
        f.assertPfnIsPagemaps(rd);
        assertFalse(rd.writable(), "a read-only VMA is not mapped writable");
        // noWait: a read of a non-present page of a readable VMA needs IO; a write is invalid → FAULT
        assertEquals(PfnError.NEEDS_IO, f.fp.follow(FollowPfnRequest.read(g0 + 1).withNoWait(true)).error());
        assertEquals(PfnError.FAULT, f.fp.follow(FollowPfnRequest.write(g0 + 1).withNoWait(true)).error());
        // PROT_NONE: FAULT for any access, with or without noWait
        assertEquals(PfnError.FAULT, f.fp.follow(FollowPfnRequest.read(g0 + 2)).error());
        assertEquals(PfnError.FAULT, f.fp.follow(FollowPfnRequest.read(g0 + 3).withNoWait(true)).error());
        assertEquals(PfnError.FAULT, f.fp.follow(FollowPfnRequest.write(g0 + 2)).error());
        assertFalse(f.present(r.address() + 2 * PAGE));
        f.fp.releaseFaultinPage(rd, false, false);
        try (Invalidation inv = f.notifier.invalidate(r.address(), r.address() + 4 * PAGE)) {
            Mman.mprotect(r.address(), 4 * PAGE, Mman.PROT_READ | Mman.PROT_WRITE);
        }
    }

    @Test
    void sharedMemfdPages() {
        HostRegion r = f.own(HostRegion.memfd(8 * PAGE).create());
        Memslot s = f.slot(r, 0);
        FollowPfnResult rd = f.fp.follow(FollowPfnRequest.read(s.baseGfn() + 1).withMapWritable(true));
        f.assertPfnIsPagemaps(rd);
        assertTrue(PagemapEntry.isFileOrShared(f.pagemap.readRaw(rd.hva())));
        System.out.println("memfd read: " + rd + " " + KPageFlag.decode(rd.page().kpageflags()));
        assertTrue(rd.writable(), "a shared writable shmem mapping maps read faults writable");
        FollowPfnResult w = f.fp.follow(FollowPfnRequest.write(s.baseGfn() + 1));
        assertEquals(rd.pfn(), w.pfn(), "no COW in a shared mapping");
        assertEquals(Path.FAST, w.path());
        assertFalse(KPageFlag.ANON.in(w.page().kpageflags()));
    }

    @Test
    void poisonMarksAnswerHwpoison() {
        HostRegion r = f.own(HostRegion.anonymous(4 * PAGE).create());
        Memslot s = f.slot(r, 0);
        FollowPfnResult w = f.fp.follow(FollowPfnRequest.write(s.baseGfn()));
        f.assertPfnIsPagemaps(w);
        assertFalse(w.page().hwpoison());
        f.fp.poison().poisonPfn(w.pfn());
        FollowPfnResult p = f.fp.follow(FollowPfnRequest.read(s.baseGfn()));
        assertEquals(PfnError.HWPOISON, p.error());
        assertEquals(KvmPfn.ERR_HWPOISON, p.pfn());
        assertNull(p.reference());
        f.fp.poison().unpoisonPfn(w.pfn());
        f.fp.poison().poisonGfn(0, s.baseGfn() + 1);
        assertEquals(PfnError.HWPOISON, f.fp.follow(FollowPfnRequest.write(s.baseGfn() + 1)).error());
        assertFalse(f.present(r.address() + PAGE), "a poisoned gfn is not touched");
        assertTrue(f.fp.follow(FollowPfnRequest.read(s.baseGfn())).ok());
    }

    /** Mappability by gfn and no reference counts: only FollowPfn's FOLL_GUEST row is exercised. */
    private record MappabilityOnly(java.util.function.LongFunction<Mappability> of) implements PrivatePages {
        @Override
        public Mappability mappability(Memslot slot, long gfn) {
            return of.apply(gfn);
        }

        @Override
        public boolean tryGet(Memslot slot, long gfn, boolean guest) {
            return FollGuest.view(of.apply(gfn), guest).ok();
        }

        @Override
        public void put(Memslot slot, long gfn, boolean guest) { }
    }

    @Test
    void follGuestSeparatesPrivateFromShared() {
        HostRegion r = f.own(HostRegion.memfd(4 * PAGE).create());
        Memslot s = f.slot(r, 0);
        long priv = s.baseGfn() + 1;
        FollowPfn fp = f.followPfn(FollowPfnCollaborators.standalone().withPrivatePages(new MappabilityOnly(
                gfn -> gfn == priv ? Mappability.GUEST : gfn == priv + 1 ? Mappability.NONE : Mappability.ALL)));
        // private: refused to the host view, untouched; granted to the guest view
        assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.write(priv)).error());
        assertFalse(f.present(r.address() + PAGE), "host lookup of a private page touched it");
        FollowPfnResult g = fp.follow(FollowPfnRequest.write(priv).withGuest(true));
        f.assertPfnIsPagemaps(g);
        assertTrue(g.writable(), "private memory that is host-writable is mapped writable");
        assertTrue(g.reference().guest(), "the reference belongs to the private view");
        // shared: only without the guest flag
        assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.read(s.baseGfn()).withGuest(true)).error());
        assertTrue(fp.follow(FollowPfnRequest.read(s.baseGfn())).ok());
        // transient: nobody
        assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.read(priv + 1)).error());
        assertEquals(PfnError.FAULT, fp.follow(FollowPfnRequest.read(priv + 1).withGuest(true)).error());
        // f.fp was built without private memory: everything is shared there
        assertTrue(f.fp.follow(FollowPfnRequest.read(priv)).ok());
    }

    /**
     * Writability is not part of the FOLL_GUEST rule: a READONLY slot is refused for write before it (row 2, KVM's
     * order: {@code __gfn_to_hva_many} refuses the write before GUP), private or not.
     */
    @Test
    void follGuestWriteCheckIsTheReadOnlySlotRow() {
        HostRegion r = f.own(HostRegion.memfd(4 * PAGE).create());
        Memslot ro = f.slot(r, Memslot.READONLY);
        long priv = ro.baseGfn() + 1;
        FollowPfn fp = f.followPfn(FollowPfnCollaborators.standalone().withPrivatePages(new MappabilityOnly(
                gfn -> gfn == priv ? Mappability.GUEST : Mappability.ALL)));
        // a read-only page is not mapped writable, private or not...
        assertEquals(PfnError.RO_FAULT, fp.follow(FollowPfnRequest.write(priv).withGuest(true)).error());
        assertEquals(PfnError.RO_FAULT, fp.follow(FollowPfnRequest.write(ro.baseGfn())).error());
        // ...is mapped readable (and not writable, even when the host mapping is)...
        FollowPfnResult rd = fp.follow(FollowPfnRequest.read(priv).withGuest(true).withMapWritable(true));
        f.assertPfnIsPagemaps(rd);
        assertFalse(rd.writable(), "a READONLY slot clears map_writable, private or not");
        // ...and a refused view is never turned into OK by it.
        assertFalse(fp.follow(FollowPfnRequest.write(priv)).ok());
        assertFalse(fp.follow(FollowPfnRequest.read(priv)).ok());
    }

    @Test
    void releaseMarksDirtyOnlyForDirtyLoggingSlotsAndNotifiesTheLastRelease() {
        HostRegion r = f.own(HostRegion.anonymous(8 * PAGE).create());
        HostRegion r2 = f.own(HostRegion.anonymous(8 * PAGE).create());
        Memslot logged = f.slot(r, Memslot.LOG_DIRTY_PAGES);
        Memslot plain = f.slot(r2, 0);
        List<long[]> marks = new ArrayList<>();
        FollowPfn fp = f.followPfn(FollowPfnCollaborators.standalone().withDirtyLog(
                (slot, gfn, n) -> marks.add(new long[] {slot.kvmSlot(), gfn, n})));

        FollowPfnResult a = fp.follow(FollowPfnRequest.write(logged.baseGfn() + 2));
        FollowPfnResult b = fp.follow(FollowPfnRequest.write(logged.baseGfn() + 2));
        FollowPfnResult c = fp.follow(FollowPfnRequest.write(plain.baseGfn()));
        assertTrue(fp.references().holdsPfn(a.pfn()));
        assertEquals(2, fp.references().count(logged.baseGfn() + 2));
        fp.releaseFaultinPage(a, true, true); // unused: no mark
        assertTrue(marks.isEmpty());
        assertTrue(fp.references().holds(logged.baseGfn() + 2), "one reference left");
        fp.releaseFaultinPage(b, false, true);
        assertEquals(1, marks.size());
        assertEquals(logged.kvmSlot(), marks.get(0)[0]);
        assertEquals(logged.baseGfn() + 2, marks.get(0)[1]);
        assertEquals(1, marks.get(0)[2], "one frame per release");
        assertFalse(fp.references().holds(logged.baseGfn() + 2), "the last release dropped the gfn's count");
        assertFalse(fp.references().holdsPfn(a.pfn()));
        fp.releaseFaultinPage(c, false, true);
        assertEquals(1, marks.size(), "no dirty log on a slot without LOG_DIRTY_PAGES");
        // The deferred final put at the last release is the guest_memfd page state's: VmMemoryTest.
    }

    @Test
    void unreleasedReferencesAreReportedAtSlotDeleteAndClose() {
        HostRegion r = f.own(HostRegion.anonymous(4 * PAGE).create());
        Memslot s = f.slot(r, 0);
        try (FollowPfn other = new FollowPfn(f.notifier, FollowPfnCollaborators.standalone())) {
            FollowPfnResult w = other.follow(FollowPfnRequest.write(s.baseGfn()));
            assertTrue(w.ok());
            f.memslots.deleteMemslot(0, s.id());
            assertEquals(1, other.leakReports().size(), other.leakReports()::toString);
            assertTrue(other.leakReports().get(0).contains("DELETE of slot " + s.id()));
            other.close();
            assertEquals(2, other.leakReports().size());
            assertThrows(IllegalStateException.class, () -> other.follow(FollowPfnRequest.read(1)));
        }
    }
}
