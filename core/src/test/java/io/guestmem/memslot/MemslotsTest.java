package io.guestmem.memslot;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.KvmException;
import io.guestmem.procfs.AccessOk;
import io.guestmem.procfs.Pagemap;
import io.guestmem.sys.Arch;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Posix;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

class MemslotsTest {

    static final long HVA = 0x7f00_0000_0000L;
    static final int RO = Memslot.READONLY, LOG = Memslot.LOG_DIRTY_PAGES, GMEM = Memslot.GUEST_MEMFD;

    static List<PageGeometry> geometries() {
        return List.of(PageGeometry.K4, PageGeometry.K16, PageGeometry.K64);
    }

    /** Asserts the KVM errno, and that a refused request changed nothing. */
    static KvmException refused(Memslots ms, Errno errno, Executable call) {
        long gen = ms.generation();
        List<MemslotSet> before = new ArrayList<>();
        for (int as = 0; as < ms.addressSpaces(); as++) before.add(ms.current(as));
        KvmException e = assertThrows(KvmException.class, call);
        assertEquals(errno, e.errno(), e.getMessage());
        assertTrue(e.getMessage().startsWith(errno.name() + " from setMemslot("), e.getMessage());
        assertEquals(gen, ms.generation());
        for (int as = 0; as < ms.addressSpaces(); as++) assertSame(before.get(as), ms.current(as));
        return e;
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void validationMatrix(PageGeometry g) {
        long ps = g.pageSize();
        Memslots ms = new Memslots(Memslots.Config.of(g).withMaxSlots(100));
        // flags
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, 8, 0, ps, HVA));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, 0x80000000, 0, ps, HVA));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, GMEM | RO, 0, ps, HVA, 3, 0));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, GMEM | LOG, 0, ps, HVA, 3, 0));
        Memslots noPriv = new Memslots(Memslots.Config.of(g).withPrivateMem(false).withReadonlyMem(false));
        refused(noPriv, Errno.EINVAL, () -> noPriv.setMemslot(0, 0, GMEM, 0, ps, HVA, 3, 0));
        refused(noPriv, Errno.EINVAL, () -> noPriv.setMemslot(0, 0, RO, 0, ps, HVA));
        // alignment to this geometry's page size (half a page and one 4K page both miss for 16K/64K)
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, 0, 0, ps + ps / 2, HVA));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, 0, ps / 2, ps, HVA));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, 0, 0, ps, HVA + ps / 2));
        if (ps > 4096) {
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, 0, 4096, ps, HVA));
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, 0, 0, 4096, HVA));
        }
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, GMEM, 0, ps, HVA, 3, ps / 2));
        // access_ok: kernel-half hva, wrapping hva range
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, 0, 0, ps, 0x8000_0000_0000_0000L));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, 0, 0, 2 * ps, Long.MAX_VALUE & g.mask()));
        // address space and id limits
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(2, 0, 0, 0, ps, HVA));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(-1, 0, 0, 0, ps, HVA));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 100, 0, 0, ps, HVA));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, -1, 0, 0, ps, HVA));
        assertNotNull(ms.setMemslot(0, 99, 0, 0, ps, HVA));
        // gpa + size wraps; too many pages
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, 0, -ps, 2 * ps, HVA));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, 0, 0, (Memslots.MAX_NR_PAGES + 1) << g.shift(), HVA));
        // delete of a slot that does not exist
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, 0, 0, 0, 0));
        refused(ms, Errno.EINVAL, () -> ms.deleteMemslot(1, 99)); // exists only in address space 0
        // deletion still validates flags and alignment first, as KVM does
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 99, 8, 0, 0, 0));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 99, 0, ps / 2, 0, 0));
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void overlapAndModificationRules(PageGeometry g) {
        long ps = g.pageSize();
        Memslots ms = new Memslots(Memslots.Config.of(g));
        assertEquals(MemslotChange.Kind.CREATE, ms.setMemslot(0, 1, 0, 0x100 * ps, 0x10 * ps, HVA).kind());
        // overlaps, from every side, in the same address space: EEXIST
        refused(ms, Errno.EEXIST, () -> ms.setMemslot(0, 2, 0, 0xff * ps, 2 * ps, HVA));
        refused(ms, Errno.EEXIST, () -> ms.setMemslot(0, 2, 0, 0x10f * ps, ps, HVA));
        refused(ms, Errno.EEXIST, () -> ms.setMemslot(0, 2, 0, 0x80 * ps, 0x100 * ps, HVA));
        KvmException e = refused(ms, Errno.EEXIST, () -> ms.setMemslot(0, 2, 0, 0x104 * ps, ps, HVA));
        assertTrue(e.getMessage().contains("overlaps slot 1"), e.getMessage());
        // adjacent on both sides, and the same gfns in the other address space: fine (hva aliasing too)
        assertNotNull(ms.setMemslot(0, 2, 0, 0xff * ps, ps, HVA));
        assertNotNull(ms.setMemslot(0, 3, 0, 0x110 * ps, ps, HVA));
        assertNotNull(ms.setMemslot(1, 1, 0, 0x100 * ps, 0x10 * ps, HVA));

        // modification of slot 1
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, 0, 0x100 * ps, 0x11 * ps, HVA));     // size
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, 0, 0x100 * ps, 0x10 * ps, HVA + ps)); // hva
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, RO, 0x100 * ps, 0x10 * ps, HVA));    // READONLY toggle
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, GMEM, 0x100 * ps, 0x10 * ps, HVA, 3, 0));
        refused(ms, Errno.EEXIST, () -> ms.setMemslot(0, 1, 0, 0x108 * ps, 0x10 * ps, HVA));     // onto slot 3
        assertNull(ms.setMemslot(0, 1, 0, 0x100 * ps, 0x10 * ps, HVA), "identical request changes nothing");
        long gen = ms.generation();
        MemslotChange flags = ms.setMemslot(0, 1, LOG, 0x100 * ps, 0x10 * ps, HVA);
        assertEquals(MemslotChange.Kind.FLAGS_ONLY, flags.kind());
        assertEquals(0, flags.old().flags());
        assertEquals(LOG, flags.updated().flags());
        // a move that overlaps only its own old position is fine
        MemslotChange move = ms.setMemslot(0, 1, LOG, 0x1000 * ps, 0x10 * ps, HVA);
        assertEquals(MemslotChange.Kind.MOVE, move.kind());
        move = ms.setMemslot(0, 1, LOG, 0x1008 * ps, 0x10 * ps, HVA);
        assertEquals(MemslotChange.Kind.MOVE, move.kind());
        assertEquals(0x1000, move.old().baseGfn());
        assertEquals(0x1008, move.updated().baseGfn());
        assertEquals(gen + 3, ms.generation());
        assertSame(move.updated(), ms.current().findByGfn(0x1008));
        assertNull(ms.current().findByGfn(0x100));
        assertEquals(MemslotChange.Kind.DELETE, ms.deleteMemslot(0, 1).kind());
        assertNull(ms.current().byId(1));
        assertNotNull(ms.current(1).byId(1));
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void guestMemfdSlotsAreImmutable(PageGeometry g) {
        long ps = g.pageSize();
        Memslots ms = new Memslots(Memslots.Config.of(g));
        refused(ms, Errno.EBADF, () -> ms.setMemslot(0, 4, GMEM, 0, 4 * ps, HVA, -1, 0));
        Memslot s = ms.setMemslot(0, 4, GMEM, 0, 4 * ps, HVA, 7, 8 * ps).updated();
        assertEquals(7, s.gmemFd());
        assertEquals(8 * ps, s.gmemOffset());
        assertTrue(s.guestMemfd());
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 4, GMEM, 16 * ps, 4 * ps, HVA, 7, 8 * ps)); // move
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 4, GMEM, 0, 4 * ps, HVA, 7, 8 * ps));      // even identical
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 4, 0, 0, 4 * ps, HVA));                     // drop GUEST_MEMFD
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 4, LOG, 0, 4 * ps, HVA));                   // start logging
        assertEquals(MemslotChange.Kind.DELETE, ms.deleteMemslot(0, 4).kind());
        // a non-gmem slot ignores the guest_memfd fields
        Memslot plain = ms.setMemslot(0, 4, 0, 0, ps, HVA, 7, 3).updated();
        assertEquals(-1, plain.gmemFd());
        assertEquals(0, plain.gmemOffset());
    }

    @Test
    void generationsAndSnapshotIsolation() {
        PageGeometry g = PageGeometry.K4;
        Memslots ms = new Memslots(Memslots.Config.of(g));
        assertEquals(0, ms.generation());
        MemslotSet empty = ms.current();
        ms.setMemslot(0, 0, 0, 0, 0x10000, HVA);
        MemslotSet one = ms.current();
        assertEquals(1, one.generation());
        ms.setMemslot(1, 0, 0, 0, 0x10000, HVA);
        assertEquals(2, ms.current(1).generation(), "generations are shared by the address spaces");
        assertSame(one, ms.current(0), "a change in address space 1 does not replace address space 0's set");
        ms.setMemslot(0, 0, 0, 0x100000, 0x10000, HVA); // move
        ms.setMemslot(0, 1, 0, 0, 0x1000, HVA + 0x100000);
        assertEquals(4, ms.current().generation());
        // readers holding older sets still see exactly them
        assertTrue(empty.isEmpty());
        assertEquals(HVA + 0x5000, one.gfnToHva(5));
        assertEquals(0, one.byId(0).baseGfn());
        assertEquals(HVA + 0x100000, ms.current().gfnToHva(0));
        assertEquals(HVA + 0x5000, ms.current().gfnToHva(0x105));
        ms.deleteMemslot(0, 0);
        assertEquals(HVA + 0x5000, one.gfnToHva(5));
        assertEquals(MemslotSet.BAD_HVA, ms.current().gfnToHva(0x105));
        assertEquals(5, ms.generation());
    }

    /** Records calls in one shared log; vetoes when told to. */
    static final class Recorder implements MemslotObserver {
        final String name;
        final List<String> log;
        final Memslots ms;
        RuntimeException veto;
        long generationSeenBefore = -1, generationSeenCommitted = -1;

        Recorder(String name, List<String> log, Memslots ms) {
            this.name = name;
            this.log = log;
            this.ms = ms;
        }

        @Override
        public void beforeCommit(MemslotChange c) {
            generationSeenBefore = ms.current(0).generation();
            log.add(name + ".before " + c.kind());
            if (veto != null) throw veto;
        }

        @Override
        public void rolledBack(MemslotChange c) {
            log.add(name + ".rolledBack " + c.kind());
        }

        @Override
        public void committed(MemslotChange c) {
            generationSeenCommitted = ms.current(0).generation();
            log.add(name + ".committed " + c.kind());
        }
    }

    @Test
    void observersInOrderVetoRollsBackAndReachesTheCallerUnchanged() {
        Memslots ms = new Memslots(Memslots.Config.of(PageGeometry.K4));
        List<String> log = new ArrayList<>();
        Recorder a = new Recorder("a", log, ms), b = new Recorder("b", log, ms), c = new Recorder("c", log, ms);
        ms.addObserver(a);
        ms.addObserver(b);
        ms.addObserver(c);
        ms.setMemslot(0, 0, 0, 0, 0x4000, HVA);
        assertEquals(List.of("a.before CREATE", "b.before CREATE", "c.before CREATE",
                "a.committed CREATE", "b.committed CREATE", "c.committed CREATE"), log);
        assertEquals(0, a.generationSeenBefore, "observers run before the new set is published");
        assertEquals(1, c.generationSeenCommitted, "committed runs after it is published");

        // b vetoes a delete (a locked slot): a is rolled back, c never hears of it, the caller gets b's exception
        log.clear();
        KvmException busy = new KvmException(Errno.EBUSY, "deleteMemslot(slot 0)", "slot 0 is locked");
        b.veto = busy;
        MemslotSet before = ms.current();
        KvmException thrown = assertThrows(KvmException.class, () -> ms.deleteMemslot(0, 0));
        assertSame(busy, thrown);
        assertEquals(List.of("a.before DELETE", "b.before DELETE", "a.rolledBack DELETE"), log);
        assertSame(before, ms.current());
        assertEquals(1, ms.generation());

        // an Error vetoes too, and a rollback that throws is attached, not lost
        log.clear();
        ms.removeObserver(b);
        MemslotObserver failingRollback = new MemslotObserver() {
            public void beforeCommit(MemslotChange ch) { log.add("d.before"); }
            public void rolledBack(MemslotChange ch) { throw new IllegalStateException("rollback failed"); }
        };
        ms.addObserver(failingRollback);
        c.veto = null;
        Recorder e = new Recorder("e", log, ms);
        e.veto = new IllegalArgumentException("nope");
        ms.addObserver(e);
        IllegalArgumentException iae = assertThrows(IllegalArgumentException.class, () -> ms.deleteMemslot(0, 0));
        assertSame(e.veto, iae);
        assertEquals(1, iae.getSuppressed().length);
        assertEquals(List.of("a.before DELETE", "c.before DELETE", "d.before", "e.before DELETE",
                "c.rolledBack DELETE", "a.rolledBack DELETE"), log);
        assertSame(before, ms.current());
        ms.removeObserver(e);
        assertEquals(MemslotChange.Kind.DELETE, ms.deleteMemslot(0, 0).kind());
    }

    @Test
    void aGateThatThrowsBeforePublishingVetoes() {
        Memslots ms = new Memslots(Memslots.Config.of(PageGeometry.K4));
        List<String> log = new ArrayList<>();
        ms.addObserver(new Recorder("a", log, ms));
        ms.installPublishGate((change, publish) -> {
            throw new IllegalStateException("gate says no");
        });
        assertThrows(IllegalStateException.class, () -> ms.installPublishGate((c, p) -> p.run()));
        assertThrows(IllegalStateException.class, () -> ms.setMemslot(0, 0, 0, 0, 0x1000, HVA));
        assertEquals(List.of("a.before CREATE", "a.rolledBack CREATE"), log);
        assertTrue(ms.current().isEmpty());
        assertEquals(0, ms.generation());
    }

    // ------------------------------------------------------------------ access_ok's limit

    @Test
    void theAddressLimitIsTheMachinesAndAccessOkAllowsRangesEndingAtIt() {
        long taskSize;
        try (Pagemap pm = Pagemap.openSelf()) {
            taskSize = pm.userAddressLimit();
        }
        long limit = AccessOk.limit();
        System.out.println("access_ok limit " + Long.toHexString(limit) + " (" + Arch.CURRENT.name() + ", mm->task_size "
                + Long.toHexString(taskSize) + ")");
        assertEquals(Arch.CURRENT.accessOkLimit(taskSize), limit);
        if (Arch.CURRENT.isX86()) assertEquals(taskSize, limit, "x86-64: USER_PTR_MAX is TASK_SIZE_MAX, a 64-bit task's size");
        else assertTrue(limit >= taskSize, "arm64: TASK_SIZE_MAX (1 << VA_BITS) is at least 1 << vabits_actual");
        assertEquals(limit, Memslots.Config.defaults().userAddressLimit(), "the writer's default is the machine's limit");
        // The rule at the edges (size 0 may start at the limit; one byte more or a wrap may not).
        assertTrue(AccessOk.ok(limit, 0, limit));
        assertTrue(AccessOk.ok(limit - 4096, 4096, limit));
        assertTrue(AccessOk.ok(0, limit, limit));
        assertFalse(AccessOk.ok(limit - 4096, 4097, limit));
        assertFalse(AccessOk.ok(limit + 1, 0, limit));
        assertFalse(AccessOk.ok(0, limit + 1, limit));
        assertFalse(AccessOk.ok(-4096, 8192, limit));
        assertFalse(AccessOk.ok(4096, -4096, limit));

        // The machine's writer: the last page below the limit is accepted, the page at the limit is not, nor
        // is anything between the limit and 2^63 (which the writer accepted before it read the limit).
        long ps = Posix.PAGE_SIZE;
        Memslots ms = new Memslots();
        assertNotNull(ms.setMemslot(0, 0, 0, 0, ps, limit - ps));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, 0, ps, ps, limit));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, 0, ps, 2 * ps, limit - ps));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, 0, ps, ps, 1L << 62));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, 0, ps, ps, (Long.MAX_VALUE - ps + 1) & ~(ps - 1)));
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void anArchitecturesLimitBoundsHvaRangesAndDeletes(PageGeometry g) {
        long ps = g.pageSize();
        for (long limit : new long[] {1L << 47, (1L << 47) - 4096, 1L << 48, 1L << 52, (1L << 56) - 4096}) {
            if (!g.isAligned(limit)) continue;
            Memslots ms = new Memslots(Memslots.Config.of(g).withUserAddressLimit(limit));
            assertNotNull(ms.setMemslot(0, 0, 0, 0, 4 * ps, limit - 4 * ps), "a range ending at the limit");
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, 0, 8 * ps, 4 * ps, limit - 3 * ps));
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, 0, 8 * ps, ps, limit));
            // a delete runs access_ok on its (unused) hva too: at the limit with size 0 passes, past it does not
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 0, 0, 0, 0, limit + ps));
            assertEquals(MemslotChange.Kind.DELETE, ms.setMemslot(0, 0, 0, 0, 0, limit).kind());
        }
    }

    // ------------------------------------------------------------------ kvm_gmem_bind

    /** A guest_memfd as the writer sees it: a real open descriptor (of /dev/null) and a size. */
    record File(int fd, long size) implements GuestMemfdFile {
        static File open(long size) {
            return new File(Posix.open("/dev/null", Posix.O_RDONLY), size);
        }
    }

    @ParameterizedTest
    @MethodSource("geometries")
    void guestMemfdBindingsAreCheckedAsKvmGmemBindDoes(PageGeometry g) {
        long ps = g.pageSize();
        GuestMemfdTable table = new GuestMemfdTable();
        File a = File.open(8 * ps), b = File.open(8 * ps), foreign = File.open(8 * ps);
        try {
            table.register(a);
            table.register(b);
            Memslots ms = new Memslots(Memslots.Config.of(g).withGuestMemfds(table));
            // not this VM's: an open descriptor that is no guest_memfd of it (EINVAL), none at all (EBADF)
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, GMEM, 0, 4 * ps, HVA, foreign.fd(), 0));
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, GMEM, 0, 4 * ps, HVA, foreign, 0));
            refused(ms, Errno.EBADF, () -> ms.setMemslot(0, 1, GMEM, 0, 4 * ps, HVA, 1 << 29, 0));
            refused(ms, Errno.EBADF, () -> ms.setMemslot(0, 1, GMEM, 0, 4 * ps, HVA, -1, 0));
            // a handle that names a registered fd but is not the registered file: not this VM's
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, GMEM, 0, 4 * ps, HVA, new File(a.fd(), 8 * ps), 0));
            // the range must lie in the file: offset + size up to the size, not past it; no negative offset
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, GMEM, 0, 4 * ps, HVA, a.fd(), 5 * ps));
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, GMEM, 0, 9 * ps, HVA, a.fd(), 0));
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 1, GMEM, 0, 4 * ps, HVA, a.fd(), Long.MIN_VALUE));
            assertEquals(4 * ps, ms.setMemslot(0, 1, GMEM, 0, 4 * ps, HVA, a.fd(), 4 * ps).updated().gmemOffset());
            // two bindings of one file must not overlap, whatever their gpas and address spaces
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 2, GMEM, 16 * ps, 2 * ps, HVA, a.fd(), 7 * ps));
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(1, 2, GMEM, 16 * ps, 8 * ps, HVA, a, 0));
            KvmException e = refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 2, GMEM, 16 * ps, 5 * ps, HVA, a.fd(), 0));
            assertTrue(e.getMessage().contains("overlap"), e.getMessage());
            // adjacent in the file, and the same range of another file: fine
            assertNotNull(ms.setMemslot(0, 2, GMEM, 16 * ps, 4 * ps, HVA, a, 0));
            assertNotNull(ms.setMemslot(1, 3, GMEM, 32 * ps, 8 * ps, HVA, b.fd(), 0));
            // deleting a slot unbinds its range
            ms.deleteMemslot(0, 1);
            assertNotNull(ms.setMemslot(0, 1, GMEM, 48 * ps, 2 * ps, HVA, a.fd(), 6 * ps));
            // a closed guest_memfd's bindings go with it (kvm_gmem_release); a new file may take its number
            table.unregister(b, b.fd());
            refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 4, GMEM, 64 * ps, ps, HVA, b.fd(), 0));
            File b2 = new File(b.fd(), 8 * ps);
            table.register(b2);
            assertNotNull(ms.setMemslot(0, 4, GMEM, 64 * ps, 8 * ps, HVA, b2, 0));
        } finally {
            Posix.close(a.fd());
            Posix.close(b.fd());
            Posix.close(foreign.fd());
        }
    }

    @Test
    void withoutATableTheWritersOwnBindingsByFdStillMustNotOverlap() {
        long ps = PageGeometry.K4.pageSize();
        Memslots ms = new Memslots(Memslots.Config.of(PageGeometry.K4));
        assertNotNull(ms.setMemslot(0, 1, GMEM, 0, 4 * ps, HVA, 7, 0));
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 2, GMEM, 16 * ps, 4 * ps, HVA, 7, 3 * ps));
        assertNotNull(ms.setMemslot(0, 2, GMEM, 16 * ps, 4 * ps, HVA, 7, 4 * ps));
        assertNotNull(ms.setMemslot(0, 3, GMEM, 32 * ps, 4 * ps, HVA, 8, 0), "another fd is another file");
        // a handle's size bounds the binding even without a table
        refused(ms, Errno.EINVAL, () -> ms.setMemslot(0, 4, GMEM, 48 * ps, 4 * ps, HVA, new File(9, 2 * ps), 0));
    }

    @Test
    void theV1IoctlTakesNoGuestMemfdAndTheGpaLimitCostsTheArchitecturesErrno() {
        long ps = PageGeometry.K4.pageSize();
        Memslots ms = new Memslots(Memslots.Config.of(PageGeometry.K4).withGpaLimit(1L << 40, Errno.EFAULT));
        refused(ms, Errno.EINVAL, () -> ms.setMemslotV1(0, 1, GMEM, 0, ps, HVA));
        refused(ms, Errno.EINVAL, () -> ms.setMemslotV1(0, 1, 8, 0, ps, HVA));
        assertNotNull(ms.setMemslotV1(0, 1, RO | LOG, (1L << 40) - ps, ps, HVA), "ending at the IPA limit");
        refused(ms, Errno.EFAULT, () -> ms.setMemslot(0, 2, 0, 1L << 40, ps, HVA));
        refused(ms, Errno.EFAULT, () -> ms.setMemslot(0, 2, 0, (1L << 40) + 8 * ps, ps, HVA));
        refused(ms, Errno.EFAULT, () -> ms.setMemslot(0, 1, RO | LOG, 1L << 40, ps, HVA)); // a move past it
        // the checks before it come first: an overlap is EEXIST even past the limit
        refused(ms, Errno.EEXIST, () -> ms.setMemslot(0, 2, 0, (1L << 40) - ps, 2 * ps, HVA + ps));
        Memslots x86 = new Memslots(Memslots.Config.of(PageGeometry.K4).withGpaLimit(1L << 46, Errno.EINVAL));
        refused(x86, Errno.EINVAL, () -> x86.setMemslot(0, 2, 0, 1L << 46, ps, HVA));
    }
}
