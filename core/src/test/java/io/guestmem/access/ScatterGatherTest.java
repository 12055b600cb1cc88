package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.sys.Errno;
import io.guestmem.sys.FileFd;
import io.guestmem.sys.IovecArray;
import io.guestmem.sys.Posix;
import io.guestmem.sys.Uio;
import io.guestmem.sys.UioException;
import java.io.ByteArrayOutputStream;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Scatter-gather lists of guest buffers ({@link GuestBuffers}) and vectored fd I/O on them, on real memory
 * and real files: two adjacent slots of 256 pages from gpa 0, a hole of two slots' size after them, and a
 * READONLY slot past the hole. The regions are fresh anonymous memory, so the kernel's pagemap says which
 * pages a transfer wrote; the kernel's per-thread I/O accounting says how many system calls it took.
 */
class ScatterGatherTest {
    static final long P = Posix.PAGE_SIZE;
    static final long S = 256 * P; // slot size
    HostRegion a, b, c;
    GuestMemory gm;
    /** The one private gfn of the access policy (-1: none), set by the guest_memfd test. */
    volatile long privateGfn = -1;
    FileFd devNull;

    @BeforeEach
    void setUp() {
        a = HostRegion.anonymous(S).create();
        b = HostRegion.anonymous(S).create();
        c = HostRegion.anonymous(S).create();
        gm = new GuestMemory(new Memslots(), 0, (slot, gfn, write) -> gfn != privateGfn);
        gm.addRam(0, 0, a);
        gm.addRam(1, S, b);
        gm.addRam(2, 4 * S, c, 0, S, Memslot.READONLY);
        devNull = FileFd.open("/dev/null", Posix.O_RDWR);
    }

    @AfterEach
    void tearDown() {
        devNull.close();
        gm.close();
        a.close();
        b.close();
        c.close();
    }

    static byte[] random(int n, long seed) {
        byte[] x = new byte[n];
        new Random(seed).nextBytes(x);
        return x;
    }

    byte[] guest(long gpa, long len) {
        byte[] x = new byte[(int) len];
        gm.read(gpa, x);
        return x;
    }

    static TreeSet<Long> pagesOf(long[] gpas, long[] lens) {
        TreeSet<Long> out = new TreeSet<>();
        for (int k = 0; k < gpas.length; k++) for (long g = gpas[k] / P; g <= (gpas[k] + lens[k] - 1) / P; g++) out.add(g);
        return out;
    }

    TreeSet<Long> collected() {
        TreeSet<Long> out = new TreeSet<>();
        for (DirtyPages d : gm.pagesToSend(null)) for (long g : d.gfns()) out.add(g);
        return out;
    }

    /** The gfns of slots 0 and 1 whose pages have memory behind them, per the kernel. */
    TreeSet<Long> presentGfns() {
        TreeSet<Long> out = new TreeSet<>();
        try (Pagemap pm = Pagemap.openSelf()) {
            long[] ra = pm.read(a.address(), (int) (S / P)), rb = pm.read(b.address(), (int) (S / P));
            for (int i = 0; i < ra.length; i++) if (PagemapEntry.isPresent(ra[i])) out.add((long) i);
            for (int i = 0; i < rb.length; i++) if (PagemapEntry.isPresent(rb[i])) out.add(S / P + i);
        }
        return out;
    }

    /** Three buffers in two slots, the middle one crossing from slot 0 into slot 1: four segments. */
    static final long[] CHAIN_GPAS = {3 * P + 100, S - 1000, S + 5 * P};
    static final long[] CHAIN_LENS = {P + 500, 3000, P};
    static final long CHAIN_TOTAL = 2 * P + 3500;

    @Test
    void aBufferCrossingTwoSlotsIsTwoSegmentsAtTheirHostAddresses() {
        long g = S - 2 * P + 100, len = 3 * P;
        GuestBuffers r = gm.buffers(g, len, false);
        assertEquals(2, r.count());
        assertEquals(len, r.totalLength());
        assertFalse(r.writable());
        GuestBuffers.Segment s0 = r.segment(0), s1 = r.segment(1);
        assertEquals(g, s0.gpa());
        assertEquals(0, s0.slotId());
        assertEquals(a.address() + S - 2 * P + 100, s0.memory().address());
        assertEquals(2 * P - 100, s0.length());
        assertEquals(S, s1.gpa());
        assertEquals(1, s1.slotId());
        assertEquals(b.address(), s1.memory().address());
        assertEquals(P + 100, s1.length());

        byte[] data = random((int) len, 1);
        gm.write(g, data);
        ByteArrayOutputStream seen = new ByteArrayOutputStream();
        for (GuestBuffers.Segment s : r) seen.writeBytes(s.memory().toArray(ValueLayout.JAVA_BYTE));
        assertArrayEquals(data, seen.toByteArray(), "the segments are the guest's bytes, in order");
        assertTrue(s0.memory().isReadOnly() && s1.memory().isReadOnly(), "a list checked for reading is read-only");

        // checked for writing: writes through the segments are what the guest reads
        GuestBuffers w = gm.buffers(g, len, true);
        assertTrue(w.writable());
        byte[] fresh = random((int) len, 2);
        w.memory(0).copyFrom(MemorySegment.ofArray(fresh).asSlice(0, 2 * P - 100));
        w.memory(1).copyFrom(MemorySegment.ofArray(fresh).asSlice(2 * P - 100));
        assertArrayEquals(fresh, guest(g, len));

        ByteBuffer[] bbs = r.toByteBuffers();
        assertEquals(2, bbs.length);
        assertTrue(bbs[0].isDirect() && bbs[0].isReadOnly());
        assertEquals(2 * P - 100, bbs[0].remaining());
        assertEquals(P + 100, bbs[1].remaining());
        assertFalse(w.toByteBuffers()[1].isReadOnly());
        try (IovecArray iov = w.toIovecs()) {
            assertEquals(2, iov.count());
            assertEquals(a.address() + S - 2 * P + 100, iov.base(0));
            assertEquals(2 * P - 100, iov.length(0));
            assertEquals(b.address(), iov.base(1));
            assertEquals(P + 100, iov.length(1));
        }
        assertEquals(0, gm.buffers(g, 0, false).count(), "an empty list");
    }

    @Test
    void preadvOfADescriptorChainFillsExactlyItsBytesAndMarksExactlyItsPages(@TempDir Path dir) throws Exception {
        byte[] disk = random((int) (16 * P), 3);
        Path img = dir.resolve("disk.img");
        Files.write(img, disk);
        try (FileFd fd = FileFd.open(img.toString(), Posix.O_RDONLY)) {
            GuestBuffers chain = gm.buffers(CHAIN_GPAS, CHAIN_LENS, true);
            assertEquals(4, chain.count(), "3 buffers, the middle one in 2 slots");
            assertEquals(CHAIN_TOTAL, chain.totalLength());
            assertEquals(0, gm.preadv(devNull.fd(), 0, chain), "warm-up: /dev/null reads nothing and touches nothing");

            long[] n = new long[1];
            ThreadSyscalls.Count calls = ThreadSyscalls.of(() -> n[0] = gm.preadv(fd.fd(), 4096, chain));
            assertEquals(CHAIN_TOTAL, n[0]);
            assertEquals(1, calls.reads(), "one preadv for the whole chain");

            TreeSet<Long> expected = pagesOf(CHAIN_GPAS, CHAIN_LENS);
            assertEquals(List.of(3L, 4L, S / P - 1, S / P, S / P + 5), new ArrayList<>(expected));
            assertEquals(expected, presentGfns(), "the kernel wrote those pages and no other");
            assertEquals(expected, collected(), "and the VMM's dirty log says the same");

            int at = 4096;
            for (int k = 0; k < 3; k++) {
                assertArrayEquals(Arrays.copyOfRange(disk, at, at + (int) CHAIN_LENS[k]), guest(CHAIN_GPAS[k], CHAIN_LENS[k]), "buffer " + k);
                at += (int) CHAIN_LENS[k];
                assertEquals(0, gm.readU8(CHAIN_GPAS[k] - 1), "the byte before buffer " + k);
                assertEquals(0, gm.readU8(CHAIN_GPAS[k] + CHAIN_LENS[k]), "the byte after buffer " + k);
            }
        }
    }

    @Test
    void pwritevWritesTheChainToTheFile(@TempDir Path dir) throws Exception {
        Path out = Files.createFile(dir.resolve("out"));
        byte[] expect = new byte[(int) CHAIN_TOTAL];
        int at = 0;
        for (int k = 0; k < 3; k++) {
            byte[] d = random((int) CHAIN_LENS[k], 10 + k);
            gm.write(CHAIN_GPAS[k], d);
            System.arraycopy(d, 0, expect, at, d.length);
            at += d.length;
        }
        try (FileFd fd = FileFd.open(out.toString(), Posix.O_WRONLY)) {
            GuestBuffers chain = gm.buffers(CHAIN_GPAS, CHAIN_LENS, false);
            assertEquals(CHAIN_TOTAL, gm.pwritev(devNull.fd(), 0, chain), "warm-up");
            long[] n = new long[1];
            ThreadSyscalls.Count calls = ThreadSyscalls.of(() -> n[0] = gm.pwritev(fd.fd(), 100, chain));
            assertEquals(CHAIN_TOTAL, n[0]);
            assertEquals(1, calls.writes(), "one pwritev for the whole chain");
        }
        byte[] file = Files.readAllBytes(out);
        assertEquals(100 + CHAIN_TOTAL, file.length);
        assertArrayEquals(new byte[100], Arrays.copyOf(file, 100));
        assertArrayEquals(expect, Arrays.copyOfRange(file, 100, file.length));
    }

    @Test
    void aHoleAnywhereInTheChainRefusesItBeforeAnySystemCall(@TempDir Path dir) throws Exception {
        byte[] disk = random(8192, 4);
        Path img = dir.resolve("disk.img");
        Files.write(img, disk);
        try (FileFd fd = FileFd.open(img.toString(), Posix.O_RDONLY)) {
            long[] gpas = {CHAIN_GPAS[0], 2 * S + 10, CHAIN_GPAS[2]};
            PartialAccessException e = assertThrows(PartialAccessException.class, () -> gm.buffers(gpas, CHAIN_LENS, true));
            assertEquals(2 * S + 10, e.firstBadGpa());
            assertEquals(0, e.bytesDone());
            assertEquals(GuestMemoryException.Reason.NOT_RAM, e.reason());

            // the range form: runs from slot 1 into the hole
            ThreadSyscalls.Count calls = ThreadSyscalls.of(() -> {
                PartialAccessException h = assertThrows(PartialAccessException.class, () -> gm.readv(fd.fd(), 2 * S - 100, 200));
                assertEquals(2 * S, h.firstBadGpa());
                assertEquals(0, h.bytesDone());
            });
            assertEquals(0, calls.reads(), "no readv was made");
            assertTrue(collected().isEmpty(), "nothing marked");
            assertArrayEquals(new byte[100], guest(2 * S - 100, 100), "nothing stored");
            assertEquals(16, gm.readv(fd.fd(), 0, 16));
            assertArrayEquals(Arrays.copyOf(disk, 16), guest(0, 16), "the file offset was still 0");

            // a READONLY slot refuses a list checked for writing; a list checked for reading cannot be read into
            ReadOnlySlotException ro = assertThrows(ReadOnlySlotException.class, () -> gm.buffers(4 * S + 8, 8, true));
            assertEquals(4 * S + 8, ro.firstBadGpa());
            assertEquals(0, ro.bytesDone());
            GuestBuffers readOnly = gm.buffers(4 * S + 8, 8, false);
            assertThrows(IllegalArgumentException.class, () -> gm.preadv(fd.fd(), 0, readOnly));
            try (GuestMemory other = new GuestMemory(new Memslots())) {
                assertThrows(IllegalArgumentException.class, () -> other.pwritev(fd.fd(), 0, readOnly), "another memory's list");
            }
        }
    }

    @Test
    void moreThanIovMaxSegmentsTakeTwoCallsEachWay(@TempDir Path dir) throws Exception {
        int n = Uio.IOV_MAX + 300;
        long[] gpas = new long[n], lens = new long[n];
        for (int k = 0; k < n; k++) {
            gpas[k] = k * 128L;
            lens[k] = 64;
        }
        byte[] original = random(n * 128, 5);
        gm.write(0, original);
        Path out = Files.createFile(dir.resolve("out"));
        try (FileFd fd = FileFd.open(out.toString(), Posix.O_RDWR)) {
            GuestBuffers list = gm.buffers(gpas, lens, false);
            assertEquals(n, list.count());
            gm.pwritev(devNull.fd(), 0, list);
            long[] done = new long[1];
            ThreadSyscalls.Count w = ThreadSyscalls.of(() -> done[0] = gm.pwritev(fd.fd(), 0, list));
            assertEquals(n * 64L, done[0]);
            assertEquals(2, w.writes(), "IOV_MAX + 300 iovecs: two pwritev calls");
            byte[] file = Files.readAllBytes(out);
            for (int k = 0; k < n; k++)
                assertArrayEquals(Arrays.copyOfRange(original, k * 128, k * 128 + 64), Arrays.copyOfRange(file, k * 64, k * 64 + 64), "buffer " + k);

            gm.fill(0, n * 128L, (byte) 0);
            collected();
            GuestBuffers into = gm.buffers(gpas, lens, true);
            ThreadSyscalls.Count r = ThreadSyscalls.of(() -> done[0] = gm.preadv(fd.fd(), 0, into));
            assertEquals(n * 64L, done[0]);
            assertEquals(2, r.reads(), "two preadv calls");
            for (int k = 0; k < n; k++) {
                assertArrayEquals(Arrays.copyOfRange(original, k * 128, k * 128 + 64), guest(gpas[k], 64), "buffer " + k);
                assertEquals(0, gm.readU8(gpas[k] + 64), "the gap after buffer " + k);
            }
            assertEquals(pagesOf(gpas, lens), collected());
        }
    }

    @Test
    void whenALaterCallFailsTheBytesOfTheEarlierOnesAreMarkedThenItThrows() throws Exception {
        int n = Uio.IOV_MAX + 10;
        long[] gpas = new long[n], lens = new long[n];
        for (int k = 0; k < n; k++) {
            gpas[k] = k * 64L;
            lens[k] = 16;
        }
        byte[] msg = random(Uio.IOV_MAX * 16, 6);
        gm.write(S, msg);
        collected();
        try (FileFd.Pipe pipe = FileFd.pipe(Posix.O_NONBLOCK)) {
            // exactly the first call's worth in the pipe, written from guest RAM
            assertEquals(msg.length, gm.writev(pipe.writeEnd().fd(), S, msg.length));
            UioException e = assertThrows(UioException.class, () -> gm.readv(pipe.readEnd().fd(), gm.buffers(gpas, lens, true)));
            assertEquals(Errno.EAGAIN, e.errnoEnum(), "the second call found the non-blocking pipe empty");
            assertEquals(msg.length, e.bytesDone());
            assertTrue(e.getMessage().startsWith("EAGAIN from readv(fd " + pipe.readEnd().fd() + ", 10 iovecs)"), e.getMessage());
            for (int k = 0; k < Uio.IOV_MAX; k++)
                assertArrayEquals(Arrays.copyOfRange(msg, k * 16, k * 16 + 16), guest(gpas[k], 16), "buffer " + k);
            TreeSet<Long> expected = pagesOf(Arrays.copyOf(gpas, Uio.IOV_MAX), Arrays.copyOf(lens, Uio.IOV_MAX));
            assertFalse(expected.contains(gpas[Uio.IOV_MAX] / P), "the second call's buffers start on a page of their own");
            assertEquals(expected, collected(), "exactly the first call's pages");
        }
    }

    @Test
    void guestMemfdSlotsGiveOneSegmentPerPageAndRefusePrivatePages(@TempDir Path dir) throws Exception {
        try (HostRegion m = HostRegion.memfd(4 * P).create()) {
            long base = 8 * S;
            gm.register(m);
            gm.memslots().setMemslot(0, 3, Memslot.GUEST_MEMFD, base, 4 * P, m.address(), m.fd().getAsInt(), 0);
            GuestBuffers r = gm.buffers(base + 100, 2 * P, false);
            assertEquals(3, r.count(), "page by page, as the walk asks the policy");
            assertEquals(base + 100, r.gpa(0));
            assertEquals(P - 100, r.memory(0).byteSize());
            assertEquals(base + P, r.gpa(1));
            assertEquals(P, r.memory(1).byteSize());
            assertEquals(base + 2 * P, r.gpa(2));
            assertEquals(100, r.memory(2).byteSize());
            assertEquals(m.address() + P, r.memory(1).address());

            privateGfn = base / P + 2;
            PrivateMemoryException e = assertThrows(PrivateMemoryException.class, () -> gm.buffers(base, 3 * P, true));
            assertEquals(base + 2 * P, e.firstBadGpa());
            assertEquals(0, e.bytesDone());
            Path img = dir.resolve("img");
            Files.write(img, random((int) (4 * P), 7));
            try (FileFd fd = FileFd.open(img.toString(), Posix.O_RDONLY)) {
                assertThrows(PrivateMemoryException.class, () -> gm.preadv(fd.fd(), 0, base, 3 * P));
            }
            assertArrayEquals(new byte[(int) (2 * P)], m.segment().asSlice(0, 2 * P).toArray(ValueLayout.JAVA_BYTE),
                    "the shared pages before the private one were not filled either");
        }
    }

    @Test
    void byteBuffersServeJavasScatteringAndGatheringChannels(@TempDir Path dir) throws Exception {
        byte[] disk = random((int) CHAIN_TOTAL, 8);
        Path img = dir.resolve("disk.img");
        Files.write(img, disk);
        try (FileChannel ch = FileChannel.open(img, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            GuestBuffers chain = gm.buffers(CHAIN_GPAS, CHAIN_LENS, true);
            long n = ch.read(chain.toByteBuffers());
            assertEquals(CHAIN_TOTAL, n);
            assertTrue(collected().isEmpty(), "a channel read is not seen by the dirty log");
            gm.markDirty(chain, n);
            assertEquals(pagesOf(CHAIN_GPAS, CHAIN_LENS), collected());
            gm.markDirty(chain, P + 500); // the first buffer only
            assertEquals(pagesOf(new long[] {CHAIN_GPAS[0]}, new long[] {CHAIN_LENS[0]}), collected());
            assertThrows(IllegalArgumentException.class, () -> gm.markDirty(chain, CHAIN_TOTAL + 1));
            int at = 0;
            for (int k = 0; k < 3; k++) {
                assertArrayEquals(Arrays.copyOfRange(disk, at, at + (int) CHAIN_LENS[k]), guest(CHAIN_GPAS[k], CHAIN_LENS[k]));
                at += (int) CHAIN_LENS[k];
            }
            // and back out, gathered from read-only buffers, at the end of the file
            ch.position(CHAIN_TOTAL);
            assertEquals(CHAIN_TOTAL, ch.write(gm.buffers(CHAIN_GPAS, CHAIN_LENS, false).toByteBuffers()));
        }
        byte[] file = Files.readAllBytes(img);
        assertArrayEquals(disk, Arrays.copyOfRange(file, (int) CHAIN_TOTAL, file.length));
    }

    @Test
    void aListDiesWithItsSlot() throws Exception {
        GuestBuffers r = gm.buffers(S + 8, 8, false);
        gm.removeRam(1);
        assertThrows(IllegalStateException.class, () -> r.memory(0).get(ValueLayout.JAVA_BYTE, 0));
        assertThrows(IllegalStateException.class, () -> gm.pwritev(devNull.fd(), 0, r),
                "no iovec is made over memory that is no longer the slot's");
    }
}
