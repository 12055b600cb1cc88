package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.guestmem.KvmException;
import io.guestmem.access.GuestMemory;
import io.guestmem.access.GuestMemoryException;
import io.guestmem.host.HostRegion;
import io.guestmem.host.Prefault;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotSet;
import io.guestmem.memslot.Memslots;
import io.guestmem.procfs.AddressRangeException;
import io.guestmem.procfs.Maps;
import io.guestmem.procfs.MapsEntry;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.Smaps;
import io.guestmem.procfs.Vma;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Posix;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.atomic.AtomicLong;
import net.jqwik.api.Arbitraries;
import net.jqwik.api.Arbitrary;
import net.jqwik.api.Combinators;
import net.jqwik.api.ForAll;
import net.jqwik.api.Property;
import net.jqwik.api.Provide;
import net.jqwik.api.lifecycle.AfterContainer;
import net.jqwik.api.lifecycle.BeforeContainer;

/**
 * Random, overlapping, unaligned and absurd requests to the public API. Each call either succeeds with a result
 * that agrees with the kernel (pagemap, smaps, maps) or a naive model, or fails with a documented error (KVM's
 * errno as KvmException, IllegalArgumentException for arguments no call could take, AddressRangeException,
 * GuestMemoryException), and leaves nothing behind (the leak guard runs around the container).
 */
class BadInputPropertyTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static final AtomicLong cases = new AtomicLong(), calls = new AtomicLong(), refusals = new AtomicLong();
    static LeakGuard.Snapshot baseline;

    @BeforeContainer
    static void before() {
        baseline = LeakGuard.snapshot();
    }

    @AfterContainer
    static void after() {
        ReliabilityReport.put("bad input (jqwik)", "property cases tried / API calls made / calls refused with a documented error",
                cases.get() + " / " + calls.get() + " / " + refusals.get());
        System.out.println("bad input: " + cases.get() + " cases, " + calls.get() + " calls, " + refusals.get() + " refused");
        LeakGuard.verify(baseline, "BadInputPropertyTest");
    }

    // ------------------------------------------------------------------ memslots vs a naive model

    /** One KVM_SET_USER_MEMORY_REGION2 request (no guest_memfd: that needs a real fd, see FaultInjectionTest). */
    record Op(int as, int id, int flags, long gpa, long size, long hva) {}

    static final long HVA_BASE = 0x7f0000000000L;

    @Provide
    Arbitrary<List<Op>> ops() {
        Arbitrary<Integer> as = Arbitraries.frequency(net.jqwik.api.Tuple.of(20, 0), net.jqwik.api.Tuple.of(3, 1), net.jqwik.api.Tuple.of(1, 2));
        Arbitrary<Integer> id = Arbitraries.frequency(net.jqwik.api.Tuple.of(30, -2), net.jqwik.api.Tuple.of(1, -1), net.jqwik.api.Tuple.of(1, 40000))
                .flatMap(k -> k == -2 ? Arbitraries.integers().between(0, 7) : Arbitraries.just(k));
        Arbitrary<Integer> flags = Arbitraries.of(0, 0, 0, Memslot.LOG_DIRTY_PAGES, Memslot.READONLY, 0x80, Memslot.LOG_DIRTY_PAGES | Memslot.READONLY);
        Arbitrary<Long> pageNo = Arbitraries.longs().between(0, 64);
        Arbitrary<Long> skew = Arbitraries.frequency(net.jqwik.api.Tuple.of(15, 0L), net.jqwik.api.Tuple.of(1, 1L), net.jqwik.api.Tuple.of(1, 512L));
        Arbitrary<Long> gpa = Combinators.combine(pageNo, skew).as((p, s) -> p * PAGE + s);
        Arbitrary<Long> size = Combinators.combine(Arbitraries.frequency(net.jqwik.api.Tuple.of(1, 0L), net.jqwik.api.Tuple.of(12, -1L))
                .flatMap(z -> z == 0 ? Arbitraries.just(0L) : Arbitraries.longs().between(1, 16)), skew).as((p, s) -> p * PAGE + s);
        Arbitrary<Long> hva = Arbitraries.frequency(net.jqwik.api.Tuple.of(30, 0L), net.jqwik.api.Tuple.of(1, 1L), net.jqwik.api.Tuple.of(1, 2L))
                .flatMap(k -> k == 0 ? Arbitraries.longs().between(0, 8).map(i -> HVA_BASE + i * (1L << 20))
                        : k == 1 ? Arbitraries.just(HVA_BASE + 8) : Arbitraries.just(-PAGE));
        Arbitrary<Op> op = Combinators.combine(as, id, flags, gpa, size, hva).as(Op::new);
        return op.list().ofMinSize(1).ofMaxSize(40);
    }

    /** KVM's rules for this request against the model's slots; null when it should be accepted. */
    static Errno expected(Map<Integer, Memslot> model, Op o) {
        int known = Memslot.LOG_DIRTY_PAGES | Memslot.READONLY;
        if ((o.flags() & ~known) != 0) return Errno.EINVAL;
        if (o.size() % PAGE != 0 || o.gpa() % PAGE != 0 || o.hva() % PAGE != 0) return Errno.EINVAL;
        if (o.hva() < 0) return Errno.EINVAL;
        if (o.as() < 0 || o.as() >= 2 || o.id() < 0 || o.id() >= Memslots.DEFAULT_MAX_SLOTS) return Errno.EINVAL;
        Memslot old = model.get(o.as() << 16 | o.id());
        if (o.size() == 0) return old == null ? Errno.EINVAL : null;
        long base = o.gpa() / PAGE, n = o.size() / PAGE;
        boolean placing = old == null;
        if (old != null) {
            if (o.hva() != old.userspaceAddr() || n != old.npages() || ((o.flags() ^ old.flags()) & Memslot.READONLY) != 0) return Errno.EINVAL;
            placing = base != old.baseGfn();
        }
        if (placing) {
            for (Memslot m : model.values()) {
                if (m.addressSpace() == o.as() && m.id() != o.id() && m.baseGfn() < base + n && base < m.endGfn()) return Errno.EEXIST;
            }
        }
        return null;
    }

    @Property(tries = 300)
    void memslotWriterAgreesWithANaiveModel(@ForAll("ops") List<Op> ops) {
        cases.incrementAndGet();
        Memslots slots = new Memslots();
        Map<Integer, Memslot> model = new TreeMap<>();
        for (Op o : ops) {
            calls.incrementAndGet();
            Errno want = expected(model, o);
            long gen = slots.generation();
            try {
                MemslotChange c = slots.setMemslot(o.as(), o.id(), o.flags(), o.gpa(), o.size(), o.hva());
                if (want != null) fail(o + " accepted (" + c + "), the model expects " + want);
                int key = o.as() << 16 | o.id();
                if (o.size() == 0) model.remove(key);
                else model.put(key, new Memslot(o.as(), o.id(), o.gpa() / PAGE, o.size() / PAGE, o.hva(), o.flags(), -1, 0));
            } catch (KvmException e) {
                refusals.incrementAndGet();
                assertEquals(want, e.errno(), o + ": " + e.getMessage());
                assertEquals(gen, slots.generation(), "a refused change published a set");
            }
            for (int as = 0; as < 2; as++) checkLookups(slots.current(as), model, as);
        }
    }

    /** Every slot, id and gfn lookup of the set against a linear scan of the model. */
    static void checkLookups(MemslotSet set, Map<Integer, Memslot> model, int as) {
        List<Memslot> mine = model.values().stream().filter(m -> m.addressSpace() == as).toList();
        assertEquals(mine.size(), set.size());
        for (Memslot m : mine) assertEquals(m, set.byId(m.id()));
        for (long gfn = 0; gfn < 96; gfn++) {
            Memslot hit = null;
            for (Memslot m : mine) if (m.containsGfn(gfn)) hit = m;
            long hva = set.gfnToHva(gfn), whva = set.gfnToHvaForWrite(gfn);
            if (hit == null) {
                assertEquals(MemslotSet.BAD_HVA, hva);
                assertEquals(-1, set.indexOf(gfn));
                assertNull(set.findByGfn(gfn));
            } else {
                long expect = hit.userspaceAddr() + (gfn - hit.baseGfn()) * PAGE;
                assertEquals(expect, hva, "gfn " + gfn);
                assertEquals(hit.readOnly() ? MemslotSet.RO_BAD_HVA : expect, whva);
                assertEquals(hit, set.findByGfn(gfn));
                assertEquals(expect + 123, set.gpaToHva(gfn * PAGE + 123));
            }
        }
    }

    // ------------------------------------------------------------------ host regions vs smaps/pagemap/maps

    @Property(tries = 120)
    void regionsAgreeWithTheKernel(@ForAll("kinds") int kind, @ForAll("sizes") long size, @ForAll("guards") int guard,
                                   @ForAll boolean prefault) {
        cases.incrementAndGet();
        calls.incrementAndGet();
        boolean valid = size > 0 && size % PAGE == 0 && size <= (1L << 47) && guard >= 0 && guard <= 1 << 16;
        long spanStart, spanEnd;
        HostRegion r;
        try {
            var b = switch (kind) {
                case 0 -> HostRegion.anonymous(size);
                case 1 -> HostRegion.anonymousShared(size);
                default -> HostRegion.memfd(size).name("prop");
            };
            b = b.guardPages(guard);
            if (prefault) b = b.prefault(Prefault.Mode.WRITE);
            r = b.create();
        } catch (IllegalArgumentException e) {
            refusals.incrementAndGet();
            assertTrue(!valid || size > (1L << 40), "refused a valid request: size " + size + " guard " + guard + ": " + e);
            return;
        } catch (io.guestmem.sys.SyscallException e) {
            refusals.incrementAndGet();
            assertTrue(e.is(Errno.ENOMEM) && size > (1L << 40), "size " + size + ": " + e);
            return;
        }
        try (r) {
            assertTrue(valid, "accepted size " + size + " guard " + guard);
            spanStart = r.address() - r.guardBytes();
            spanEnd = r.address() + r.size() + r.guardBytes();
            Vma v = Smaps.vmaOf(r.address());
            assertNotNull(v);
            assertTrue(v.start() <= r.address() && v.end() >= r.address() + r.size(), v + " vs " + r);
            if (r.guardBytes() > 0) {
                assertEquals(r.address(), v.start(), "a guard separates the region from its neighbour");
                MapsEntry g = Maps.find(0, r.address() - PAGE);
                assertNotNull(g);
                assertEquals("---p", g.perms(), "guard below " + g);
                assertEquals("---p", Maps.find(0, r.address() + r.size()).perms(), "guard above");
            }
            int pages = (int) Math.min(r.size() / PAGE, 4096);
            try (Pagemap pm = Pagemap.openSelf()) {
                long present = 0;
                for (long raw : pm.read(r.address(), pages)) if (PagemapEntry.isPresent(raw)) present++;
                if (prefault) assertEquals(pages, present, "prefaulted pages present");
                else if (kind == 0) assertEquals(0, present, "untouched private anonymous pages are not present");
            }
        }
        assertTrue(Maps.overlapping(0, spanStart, spanEnd).isEmpty(), "closed region left a mapping");
    }

    @Provide
    Arbitrary<Integer> kinds() {
        return Arbitraries.integers().between(0, 2);
    }

    @Provide
    Arbitrary<Long> sizes() {
        return Arbitraries.oneOf(Arbitraries.longs().between(1, 512).map(p -> p * PAGE),
                Arbitraries.of(0L, -PAGE, 1L, PAGE + 1, 3 * PAGE - 7, Long.MIN_VALUE, Long.MAX_VALUE, 1L << 47, (1L << 47) + PAGE));
    }

    @Provide
    Arbitrary<Integer> guards() {
        return Arbitraries.oneOf(Arbitraries.integers().between(0, 4), Arbitraries.of(-1, 1 << 17));
    }

    // ------------------------------------------------------------------ pagemap ranges vs maps

    @Property(tries = 300)
    void pagemapRangesAgreeWithTheMappings(@ForAll("pageOffsets") long firstPage, @ForAll("counts") long count,
                                           @ForAll("skews") long skew) {
        cases.incrementAndGet();
        calls.incrementAndGet();
        try (HostRegion r = HostRegion.anonymous(32 * PAGE).guardPages(2).prefault(Prefault.Mode.WRITE).create();
             Pagemap pm = Pagemap.openSelf()) {
            long addr = r.address() + firstPage * PAGE + skew;
            long[] raw;
            try {
                if (count > 1 << 20) {
                    pm.read(addr, count, java.lang.foreign.MemorySegment.NULL);
                    fail("read of " + count + " pages into a NULL buffer accepted");
                }
                raw = pm.read(addr, (int) count);
            } catch (IllegalArgumentException | AddressRangeException e) {
                refusals.incrementAndGet();
                assertTrue(skew != 0 || count <= 0 || count > 1 << 20, "refused a valid range: " + e);
                return;
            }
            assertTrue(skew == 0 && count > 0, "accepted an unaligned or empty range");
            for (int i = 0; i < raw.length; i++) {
                long a = addr + i * PAGE;
                boolean inRegion = r.contains(a, PAGE);
                boolean inGuard = !inRegion && a >= r.address() - r.guardBytes() && a < r.address() + r.size() + r.guardBytes();
                if (inRegion || inGuard) {
                    assertEquals(inRegion, PagemapEntry.isPresent(raw[i]), "page " + Long.toHexString(a) + " (region " + r + ")");
                } else if (Maps.find(0, a) == null) {
                    assertTrue(!PagemapEntry.isPresent(raw[i]), "unmapped page " + Long.toHexString(a) + " reported present");
                }
                if (inRegion) assertTrue(pm.pfnOf(raw[i]) > 0 || pm.pfnOf(raw[i]) == PagemapEntry.PFN_HIDDEN, "pfn 0 reported");
            }
        }
    }

    @Provide
    Arbitrary<Long> pageOffsets() {
        return Arbitraries.longs().between(-4, 36);
    }

    @Provide
    Arbitrary<Long> counts() {
        return Arbitraries.oneOf(Arbitraries.longs().between(1, 8), Arbitraries.of(0L, -1L, Long.MAX_VALUE, 1L << 50));
    }

    @Provide
    Arbitrary<Long> skews() {
        return Arbitraries.frequency(net.jqwik.api.Tuple.of(8, 0L), net.jqwik.api.Tuple.of(1, 8L), net.jqwik.api.Tuple.of(1, 1L));
    }

    // ------------------------------------------------------------------ guest memory vs a byte[] model

    record Access(boolean write, long gpa, int len, byte seed) {}

    @Provide
    Arbitrary<List<Access>> accesses() {
        // RAM: [0, 8 pages) and [12 pages, 16 pages); a hole between; nothing beyond 16 pages.
        return Combinators.combine(Arbitraries.of(true, false), Arbitraries.longs().between(0, 18 * PAGE),
                Arbitraries.integers().between(0, (int) (3 * PAGE)), Arbitraries.bytes()).as(Access::new).list().ofMaxSize(30);
    }

    @Property(tries = 150)
    void guestMemoryReadsAndWritesAgreeWithAModel(@ForAll("accesses") List<Access> accesses) {
        cases.incrementAndGet();
        byte[] model = new byte[(int) (24 * PAGE)]; // beyond RAM too: accesses reach 21 pages
        Memslots slots = new Memslots();
        try (HostRegion a = HostRegion.anonymous(8 * PAGE).create(); HostRegion b = HostRegion.memfd(4 * PAGE).name("prop-gm").create();
             GuestMemory gm = new GuestMemory(slots)) {
            gm.addRam(0, 0, a);
            gm.addRam(1, 12 * PAGE, b);
            for (Access x : accesses) {
                calls.incrementAndGet();
                boolean ram = inRam(x.gpa(), x.len());
                byte[] buf = new byte[x.len()];
                try {
                    if (x.write()) {
                        for (int i = 0; i < buf.length; i++) buf[i] = (byte) (x.seed() + i);
                        gm.write(x.gpa(), buf);
                        System.arraycopy(buf, 0, model, (int) x.gpa(), buf.length);
                    } else {
                        gm.read(x.gpa(), buf);
                        assertArrayEquals(java.util.Arrays.copyOfRange(model, (int) x.gpa(), (int) x.gpa() + x.len()), buf, "read " + x);
                    }
                    assertTrue(ram, "access touching a hole succeeded: " + x);
                } catch (GuestMemoryException e) {
                    refusals.incrementAndGet();
                    assertTrue(!ram, "access inside RAM refused: " + x + ": " + e.getMessage());
                    // a partial write did happen up to the first bad gpa: the model follows what the library says it did
                    if (x.write() && e.bytesDone() > 0) System.arraycopy(buf, 0, model, (int) x.gpa(), (int) e.bytesDone());
                    assertTrue(e.bytesDone() >= 0 && e.bytesDone() < x.len(), e.getMessage());
                }
            }
            // And the host memory itself (the kernel's view of those bytes) holds the model.
            byte[] host = new byte[(int) (8 * PAGE)];
            java.lang.foreign.MemorySegment.copy(a.segment(), java.lang.foreign.ValueLayout.JAVA_BYTE, 0, host, 0, host.length);
            assertArrayEquals(java.util.Arrays.copyOfRange(model, 0, host.length), host);
        }
    }

    static boolean inRam(long gpa, int len) {
        long end = gpa + len;
        if (len == 0) return true; // an empty access touches nothing, wherever it is (as vm-memory)
        return (end <= 8 * PAGE) || (gpa >= 12 * PAGE && end <= 16 * PAGE);
    }
}
