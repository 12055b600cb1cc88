package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.Test;

/**
 * Real userfaultfd events. Non-cooperative events block the thread that causes them until they are
 * read, so madvise/munmap/mremap run on a second thread while this one reads.
 *
 * <p>The fault-resolving tests never let Java code touch a page that is still missing: a Java thread blocked in
 * a fault would hold up the next safepoint, and with it this handler thread. The faults come from the kernel
 * instead, in a daemon thread that is inside a native {@code pwrite} from the registered range (the kernel's
 * copy from user memory faults and waits for us); this thread serves the event and the pwrite returns what was
 * served. Every wait is bounded, and closing the userfaultfd wakes a writer a failed test leaves waiting.
 */
class UserfaultfdTest {
    static final long P = Posix.PAGE_SIZE;
    static final long NONCOOP = Userfaultfd.FEATURE_EVENT_REMOVE | Userfaultfd.FEATURE_EVENT_UNMAP
            | Userfaultfd.FEATURE_EVENT_REMAP;

    @Test
    void removeOnDontneedAndUnmapOnMunmap() throws Exception {
        long len = 16 * P;
        long a = Mman.mmap(0, len, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        boolean unmapped = false;
        try (Userfaultfd uffd = Userfaultfd.open(false)) {
            // Populate first: a MISSING-registered page that is touched later would wait for a resolver.
            Mman.madvise(a, len, Mman.MADV_POPULATE_WRITE);
            Userfaultfd.Api api = uffd.api(NONCOOP);
            assertTrue(api.has(NONCOOP), "features granted: " + Long.toHexString(api.features()));
            long ioctls = uffd.register(a, len, Userfaultfd.MODE_MISSING);
            assertNotEquals(0, ioctls);
            assertNull(uffd.read(), "nothing queued yet");

            CompletableFuture<Void> dontneed = CompletableFuture.runAsync(() -> Mman.madvise(a + 4 * P, 2 * P, Mman.MADV_DONTNEED));
            assertEquals(new Userfaultfd.Remove(a + 4 * P, a + 6 * P), uffd.await(Duration.ofSeconds(10)));
            dontneed.get(10, TimeUnit.SECONDS);

            CompletableFuture<Void> unmap = CompletableFuture.runAsync(() -> Mman.munmap(a, len));
            assertEquals(new Userfaultfd.Unmap(a, a + len), uffd.await(Duration.ofSeconds(10)));
            unmap.get(10, TimeUnit.SECONDS);
            unmapped = true;
            assertNull(uffd.await(Duration.ofMillis(50)), "no further event");
        } finally {
            if (!unmapped) Mman.munmap(a, len);
        }
    }

    @Test
    void remapEventOnMremap() throws Exception {
        long len = 4 * P;
        long a = Mman.mmap(0, len, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        long target = Mman.mmap(0, len, Mman.PROT_NONE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        try (Userfaultfd uffd = Userfaultfd.open(false)) {
            Mman.madvise(a, len, Mman.MADV_POPULATE_WRITE);
            uffd.api(NONCOOP);
            uffd.register(a, len, Userfaultfd.MODE_MISSING);
            CompletableFuture<Long> moved = CompletableFuture.supplyAsync(
                    () -> Mman.mremap(a, len, len, Mman.MREMAP_MAYMOVE | Mman.MREMAP_FIXED, target));
            assertEquals(new Userfaultfd.Remap(a, target, len), uffd.await(Duration.ofSeconds(10)));
            java.util.List<Userfaultfd.Event> more = new java.util.ArrayList<>();
            for (int i = 0; i < 100 && !moved.isDone(); i++) {
                Userfaultfd.Event e = uffd.await(Duration.ofMillis(100));
                if (e != null) more.add(e);
            }
            // The kernel then reports the old range as unmapped (move_vma unmaps the source).
            assertEquals(java.util.List.of(new Userfaultfd.Unmap(a, a + len)), more);
            assertEquals(target, moved.get(10, TimeUnit.SECONDS));
        } finally {
            Mman.munmap(target, len);
        }
    }

    @Test
    void asyncWriteProtectDoesNotBlockWriters() {
        long len = 4 * P;
        long a = Mman.mmap(0, len, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        try (Userfaultfd uffd = Userfaultfd.open(true)) {
            long want = Userfaultfd.FEATURE_WP_ASYNC | Userfaultfd.FEATURE_WP_UNPOPULATED;
            Userfaultfd.Api api = uffd.api(want);
            assertTrue(api.has(want));
            uffd.register(a, len, Userfaultfd.MODE_WP);
            uffd.writeProtect(a, len, true);
            // With WP_ASYNC the kernel resolves the write-protect fault itself: no event, no blocking.
            MemorySegment.ofAddress(a).reinterpret(len).set(ValueLayout.JAVA_LONG, P, 99);
            assertNull(uffd.read());
            uffd.writeProtect(a, len, false);
            uffd.unregister(a, len);
        } finally {
            Mman.munmap(a, len);
        }
    }

    @Test
    void failuresNameErrnoAndCall() {
        long a = Mman.mmap(0, 2 * P, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        Userfaultfd closed;
        try (Userfaultfd uffd = Userfaultfd.open(true)) {
            closed = uffd;
            uffd.api(0);
            SyscallException twice = assertThrows(SyscallException.class, () -> uffd.api(0));
            assertEquals("EINVAL", twice.errnoName());
            assertTrue(twice.getMessage().contains("UFFDIO_API"), twice.getMessage());
            SyscallException e = assertThrows(SyscallException.class, () -> uffd.register(a + 1, P, Userfaultfd.MODE_MISSING));
            assertEquals("EINVAL", e.errnoName());
            assertTrue(e.getMessage().contains("UFFDIO_REGISTER"), e.getMessage());
            // WP on a range registered only for MISSING
            uffd.register(a, 2 * P, Userfaultfd.MODE_MISSING);
            assertEquals("ENOENT", assertThrows(SyscallException.class, () -> uffd.writeProtect(a, 2 * P, true)).errnoName());
            uffd.unregister(a, 2 * P);
        } finally {
            Mman.munmap(a, 2 * P);
        }
        assertThrows(IllegalStateException.class, closed::read);
        try (Userfaultfd uffd = Userfaultfd.open(true)) {
            // a feature bit no kernel has
            assertEquals("EINVAL", assertThrows(SyscallException.class, () -> uffd.api(1L << 62)).errnoName());
        }
    }

    // ---- resolving faults: copy, zeroPage, continueRange, wake, poison

    static final Duration WAIT = Duration.ofSeconds(10);
    /** Bits of the range ioctls register() answers: 1 << _UFFDIO_nr. */
    static final long RANGE_WAKE = 1L << 0x02, RANGE_COPY = 1L << 0x03, RANGE_ZEROPAGE = 1L << 0x04,
            RANGE_CONTINUE = 1L << 0x07;

    static long anon(long len) {
        return Mman.mmap(0, len, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
    }

    static MemorySegment seg(long address, long len) {
        return MemorySegment.ofAddress(address).reinterpret(len);
    }

    /** Fills {@code [address, address+len)} (present, unregistered memory) with a pattern tagged {@code tag}. */
    static void pattern(long address, long len, long tag) {
        MemorySegment m = seg(address, len);
        for (long i = 0; i < len; i += 8) m.set(ValueLayout.JAVA_LONG, i, tag << 32 | i);
    }

    /** Runs {@code c} on a daemon thread, for a call that blocks in the kernel on a fault we serve. */
    static <T> FutureTask<T> onNativeThread(String name, Callable<T> c) {
        FutureTask<T> f = new FutureTask<>(c);
        Thread t = new Thread(f, name);
        t.setDaemon(true);
        t.start();
        return f;
    }

    /** A native pwrite of {@code [address, address+len)} into {@code fd} at offset 0: the kernel reads the range. */
    static FutureTask<Long> writeOut(int fd, long address, long len) {
        return onNativeThread("uffd-faulting-pwrite", () -> Posix.pwrite(fd, seg(address, len), len, 0));
    }

    static Userfaultfd.Pagefault pagefault(Userfaultfd uffd) {
        Userfaultfd.Event e = uffd.await(WAIT);
        assertNotNull(e, "no fault event within " + WAIT);
        return assertInstanceOf(Userfaultfd.Pagefault.class, e);
    }

    /** What the file holds at {@code [0, len)}, read back through pread into native memory of {@code arena}. */
    static MemorySegment readBack(Arena arena, int fd, long len) {
        MemorySegment buf = arena.allocate(len, 8);
        assertEquals(len, Posix.pread(fd, buf, len, 0));
        return buf;
    }

    static PagemapEntry present(Pagemap pm, long address) {
        PagemapEntry e = pm.entry(address);
        assertTrue(e.present(), "not present: " + e);
        return e;
    }

    @Test
    void missingFaultsFromTheKernelAreServedByCopyAndZeroPage() throws Exception {
        long len = 2 * P;
        long a = anon(len), src = anon(P);
        int out = Memfd.create("uffd-out", 0);
        try (Arena arena = Arena.ofConfined(); Pagemap pm = Pagemap.openSelf()) {
            pattern(src, P, 0xC0FE);
            try (Userfaultfd uffd = Userfaultfd.open(false)) {
                uffd.api(0);
                long ioctls = uffd.register(a, len, Userfaultfd.MODE_MISSING);
                long want = RANGE_WAKE | RANGE_COPY | RANGE_ZEROPAGE;
                assertEquals(want, ioctls & want, "range ioctls " + Fmt.hex(ioctls));
                assertFalse(pm.entry(a).present());

                FutureTask<Long> writer = writeOut(out, a, len);
                // The kernel reads the source page by page: page 0 faults first, page 1 once page 0 is there.
                Userfaultfd.Pagefault f0 = pagefault(uffd);
                assertEquals(a, f0.address());
                assertFalse(f0.write(), "the kernel reads the range: a read fault");
                assertFalse(writer.isDone());
                assertEquals(P, uffd.copy(a, src, P, 0));
                Userfaultfd.Pagefault f1 = pagefault(uffd);
                assertEquals(a + P, f1.address());
                assertEquals(P, uffd.zeroPage(a + P, P, 0));
                assertEquals(len, writer.get(WAIT.toSeconds(), TimeUnit.SECONDS));
                assertNull(uffd.read(), "no further fault");
            }
            MemorySegment written = readBack(arena, out, len);
            assertEquals(-1, written.asSlice(0, P).mismatch(seg(src, P)), "page 0 is the copied pattern");
            assertEquals(-1, written.asSlice(P, P).mismatch(arena.allocate(P)), "page 1 is zeros");

            PagemapEntry copied = present(pm, a), zero = present(pm, a + P);
            System.out.println("UFFDIO_COPY page " + copied + ", UFFDIO_ZEROPAGE page " + zero);
            assertTrue(copied.exclusive(), "a fresh anonymous page of ours alone: " + copied);
            assertFalse(zero.exclusive(), "the zero page is nobody's: " + zero);
            assertEquals(-1, seg(a, P).mismatch(seg(src, P)), "the mapping shows the copy");
            assertEquals(-1, seg(a + P, P).mismatch(arena.allocate(P)), "and zeros");
            if (pm.pfnVisible()) {
                try (KPageFlags kpf = KPageFlags.open()) {
                    long copiedPfn = copied.pfn().orElseThrow(), zeroPfn = zero.pfn().orElseThrow();
                    Set<KPageFlag> cf = kpf.flags(copiedPfn), zf = kpf.flags(zeroPfn);
                    System.out.println("pfn " + Fmt.hex(copiedPfn) + " " + cf + "; zero page pfn " + Fmt.hex(zeroPfn) + " " + zf);
                    assertTrue(zf.contains(KPageFlag.ZERO_PAGE), "UFFDIO_ZEROPAGE maps the shared zero page: " + zf);
                    assertTrue(cf.contains(KPageFlag.ANON) && !cf.contains(KPageFlag.ZERO_PAGE), cf.toString());
                }
            } else {
                System.out.println("pfns hidden from this process: zero page identity not checked");
            }
        } finally {
            Posix.close(out);
            Mman.munmap(a, len);
            Mman.munmap(src, P);
        }
    }

    @Test
    void copyOntoAPresentPageIsEexistAndAPartialCopyReturnsItsCount() {
        long len = 2 * P;
        long a = anon(len), src = anon(len);
        try (Arena arena = Arena.ofConfined(); Pagemap pm = Pagemap.openSelf(); Userfaultfd uffd = Userfaultfd.open(false)) {
            pattern(src, len, 0x5A5A);
            pattern(a + P, P, 0x1111); // page 1 present before registration, page 0 missing
            MemorySegment page1 = arena.allocate(P, 8).copyFrom(seg(a + P, P));
            uffd.api(0);
            uffd.register(a, len, Userfaultfd.MODE_MISSING);

            // Page 0 is filled, then the kernel stops at the present page 1 and reports the partial count.
            assertEquals(P, uffd.copy(a, src, len, 0));
            SyscallException e = assertThrows(SyscallException.class, () -> uffd.copy(a + P, src + P, P, 0));
            assertTrue(e.is(Errno.EEXIST), e.getMessage());
            assertEquals(Errno.EEXIST, e.errnoEnum());
            assertEquals(Errno.EEXIST.number, e.errno());
            assertTrue(e.call().contains("UFFDIO_COPY, " + Fmt.hex(a + P) + ", " + Fmt.size(P)), e.getMessage());
            // Page 0 is now present too: copy and zeropage onto it are EEXIST as well.
            assertEquals(Errno.EEXIST, assertThrows(SyscallException.class, () -> uffd.copy(a, src, P, 0)).errnoEnum());
            SyscallException z = assertThrows(SyscallException.class, () -> uffd.zeroPage(a, len, 0));
            assertEquals(Errno.EEXIST, z.errnoEnum());
            assertTrue(z.getMessage().contains("UFFDIO_ZEROPAGE"), z.getMessage());
            uffd.wake(a, len); // nobody waits: a no-op, not an error

            present(pm, a);
            present(pm, a + P);
            assertEquals(-1, seg(a, P).mismatch(seg(src, P)), "page 0 holds the copy");
            assertEquals(-1, seg(a + P, P).mismatch(page1), "page 1 is unchanged by the refused copies");
            assertNull(uffd.read());
        } finally {
            Mman.munmap(a, len);
            Mman.munmap(src, len);
        }
    }

    @Test
    void dontWakeLeavesTheFaulterAsleepUntilWake() throws Exception {
        long a = anon(P), src = anon(P);
        int out = Memfd.create("uffd-out", 0);
        try (Arena arena = Arena.ofConfined(); Pagemap pm = Pagemap.openSelf()) {
            pattern(src, P, 0xD0);
            try (Userfaultfd uffd = Userfaultfd.open(false)) {
                Userfaultfd.Api api = uffd.api(Userfaultfd.FEATURE_THREAD_ID);
                assertTrue(api.has(Userfaultfd.FEATURE_THREAD_ID));
                uffd.register(a, P, Userfaultfd.MODE_MISSING);
                FutureTask<Long> writer = writeOut(out, a, P);
                Userfaultfd.Pagefault f = pagefault(uffd);
                assertEquals(a, f.address());
                assertNotEquals(0, f.threadId());
                // The event is queued just before the faulter goes to sleep: wait until it sleeps, so that the
                // copy below cannot land before the kernel's last look at the page (it would then not sleep at all).
                String state = awaitSleeping(f.threadId());
                System.out.println("faulting thread " + f.threadId() + " asleep: " + state);
                assertEquals(P, uffd.copy(a, src, P, Userfaultfd.COPY_MODE_DONTWAKE));
                present(pm, a);
                assertThrows(TimeoutException.class, () -> writer.get(300, TimeUnit.MILLISECONDS),
                        "mapped with DONTWAKE: the faulter sleeps on (thread state " + state + ")");
                uffd.wake(a, P);
                assertEquals(P, writer.get(WAIT.toSeconds(), TimeUnit.SECONDS));
            }
            assertEquals(-1, readBack(arena, out, P).mismatch(seg(src, P)));
        } finally {
            Posix.close(out);
            Mman.munmap(a, P);
            Mman.munmap(src, P);
        }
    }

    /**
     * Waits until thread {@code tid} of this process sleeps off the CPU: state S or D in its stat and, where the
     * kernel names it, a wait channel ({@code wchan} reads "0" while the task still runs, e.g. between setting its
     * state and calling schedule()). Returns "state wchan".
     */
    static String awaitSleeping(int tid) throws Exception {
        Path task = Path.of("/proc/self/task/" + tid);
        long deadline = System.nanoTime() + WAIT.toNanos();
        String line = "", wchan = "";
        for (int sleepingReads = 0; ; ) {
            line = Files.readString(task.resolve("stat"));
            char st = line.charAt(line.lastIndexOf(')') + 2);
            try {
                wchan = Files.readString(task.resolve("wchan")).trim();
            } catch (java.io.IOException e) {
                wchan = "?";
            }
            boolean sleeping = st == 'S' || st == 'D';
            // Without a named wchan (no kallsyms), settle for the state seen asleep over 20 consecutive reads.
            if (sleeping && (!wchan.equals("0") && !wchan.equals("?") || ++sleepingReads >= 20)) return st + " " + wchan;
            if (!sleeping) sleepingReads = 0;
            if (System.nanoTime() > deadline) fail("thread " + tid + " never slept: " + line + " wchan " + wchan);
            Thread.sleep(1);
        }
    }

    @Test
    void minorFaultOnShmemIsServedFromThePageCacheByContinue() throws Exception {
        Userfaultfd.Api offered;
        try (Userfaultfd probe = Userfaultfd.open(false)) {
            offered = probe.api(0);
        }
        if (!offered.has(Userfaultfd.FEATURE_MINOR_SHMEM))
            System.out.println("SKIP minor fault test: UFFDIO_API offers no FEATURE_MINOR_SHMEM (features "
                    + Fmt.hex(offered.features()) + ")");
        assumeTrue(offered.has(Userfaultfd.FEATURE_MINOR_SHMEM),
                "UFFDIO_API offers no FEATURE_MINOR_SHMEM: features " + Fmt.hex(offered.features()));

        long len = 2 * P;
        int mfd = Memfd.create("uffd-minor", 0), out = Memfd.create("uffd-out", 0);
        long src = anon(P);
        long m = 0;
        try (Arena arena = Arena.ofConfined(); Pagemap pm = Pagemap.openSelf()) {
            Memfd.ftruncate(mfd, len);
            pattern(src, P, 0xAAAA);
            assertEquals(P, Posix.pwrite(mfd, seg(src, P), P, 0)); // page 0 in the page cache; page 1 a hole
            m = Mman.mmap(0, len, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, mfd, 0);
            long mapping = m;
            try (Userfaultfd uffd = Userfaultfd.open(false)) {
                assertTrue(uffd.api(Userfaultfd.FEATURE_MINOR_SHMEM).has(Userfaultfd.FEATURE_MINOR_SHMEM));
                long ioctls = uffd.register(m, len, Userfaultfd.MODE_MINOR);
                assertEquals(RANGE_CONTINUE, ioctls & RANGE_CONTINUE, "range ioctls " + Fmt.hex(ioctls));
                assertFalse(pm.entry(m).present(), "in the page cache, not yet mapped here");

                FutureTask<Long> writer = writeOut(out, m, P);
                Userfaultfd.Pagefault f = pagefault(uffd);
                assertEquals(m, f.address());
                assertTrue(f.minor(), "flags " + f.flags());
                assertFalse(f.write());
                // The restore: make the page cache right through the fd, then map it.
                pattern(src, P, 0xBBBB);
                assertEquals(P, Posix.pwrite(mfd, seg(src, P), P, 0));
                assertEquals(P, uffd.continueRange(m, P, 0));
                assertEquals(P, writer.get(WAIT.toSeconds(), TimeUnit.SECONDS));

                PagemapEntry e = present(pm, m);
                System.out.println("UFFDIO_CONTINUE page " + e);
                assertTrue(e.fileOrShared(), "a page-cache page: " + e);
                SyscallException again = assertThrows(SyscallException.class, () -> uffd.continueRange(mapping, P, 0));
                assertEquals(Errno.EEXIST, again.errnoEnum(), again.getMessage());
                SyscallException hole = assertThrows(SyscallException.class, () -> uffd.continueRange(mapping + P, P, 0));
                assertEquals(Errno.EFAULT, hole.errnoEnum(), "no page in the page cache: " + hole.getMessage());
                assertTrue(hole.getMessage().contains("UFFDIO_CONTINUE, " + Fmt.hex(mapping + P)), hole.getMessage());
                assertNull(uffd.read());
            }
            assertEquals(-1, readBack(arena, out, P).mismatch(seg(src, P)), "the written bytes are the page cache's at CONTINUE");
        } finally {
            if (m != 0) Mman.munmap(m, len);
            Mman.munmap(src, P);
            Posix.close(mfd);
            Posix.close(out);
        }
    }

    @Test
    void badResolveArgumentsNameTheCallAndClosedFdThrows() {
        long len = 2 * P;
        long a = anon(len), src = anon(P), unregistered = anon(P);
        Userfaultfd closed;
        try (Userfaultfd uffd = Userfaultfd.open(false)) {
            closed = uffd;
            uffd.api(0);
            uffd.register(a, len, Userfaultfd.MODE_MISSING);
            SyscallException dst = assertThrows(SyscallException.class, () -> uffd.copy(a + 8, src, P, 0));
            assertEquals(Errno.EINVAL, dst.errnoEnum());
            assertTrue(dst.getMessage().contains("UFFDIO_COPY, " + Fmt.hex(a + 8) + ", " + Fmt.size(P)), dst.getMessage());
            SyscallException size = assertThrows(SyscallException.class, () -> uffd.copy(a, src, P + 1, 0));
            assertEquals(Errno.EINVAL, size.errnoEnum());
            assertTrue(size.getMessage().contains("UFFDIO_COPY, " + Fmt.hex(a) + ", " + (P + 1) + " B"), size.getMessage());
            assertEquals(Errno.EINVAL, assertThrows(SyscallException.class, () -> uffd.copy(a, src, 0, 0)).errnoEnum());
            assertEquals(Errno.EINVAL, assertThrows(SyscallException.class, () -> uffd.copy(a, src, P, 1L << 5)).errnoEnum(),
                    "unknown mode bit");
            SyscallException zp = assertThrows(SyscallException.class, () -> uffd.zeroPage(a + 8, P, 0));
            assertEquals(Errno.EINVAL, zp.errnoEnum());
            assertTrue(zp.getMessage().contains("UFFDIO_ZEROPAGE"), zp.getMessage());
            SyscallException wake = assertThrows(SyscallException.class, () -> uffd.wake(a + 8, P));
            assertEquals(Errno.EINVAL, wake.errnoEnum());
            assertTrue(wake.getMessage().contains("UFFDIO_WAKE"), wake.getMessage());
            SyscallException notOurs = assertThrows(SyscallException.class, () -> uffd.copy(unregistered, src, P, 0));
            assertEquals(Errno.ENOENT, notOurs.errnoEnum(), notOurs.getMessage());
            assertTrue(notOurs.getMessage().contains("registered"), notOurs.getMessage());
            assertNull(uffd.read(), "refused calls queue nothing");
        } finally {
            Mman.munmap(a, len);
            Mman.munmap(src, P);
            Mman.munmap(unregistered, P);
        }
        for (org.junit.jupiter.api.function.Executable call : java.util.List.<org.junit.jupiter.api.function.Executable>of(
                () -> closed.copy(a, src, P, 0), () -> closed.zeroPage(a, P, 0), () -> closed.continueRange(a, P, 0),
                () -> closed.poison(a, P, 0), () -> closed.wake(a, P))) {
            IllegalStateException e = assertThrows(IllegalStateException.class, call);
            assertTrue(e.getMessage().contains("is closed"), e.getMessage());
        }
    }

    @Test
    void poisonedPageFailsKernelAccessWithoutAnEvent() throws Exception {
        Userfaultfd.Api offered;
        try (Userfaultfd probe = Userfaultfd.open(false)) {
            offered = probe.api(0);
        }
        if (!offered.has(Userfaultfd.FEATURE_POISON)) System.out.println("SKIP poison test: no FEATURE_POISON (Linux < 6.6)");
        assumeTrue(offered.has(Userfaultfd.FEATURE_POISON), "no FEATURE_POISON (Linux < 6.6)");
        long a = anon(P);
        int out = Memfd.create("uffd-out", 0);
        try (Userfaultfd uffd = Userfaultfd.open(false)) {
            uffd.api(Userfaultfd.FEATURE_POISON);
            uffd.register(a, P, Userfaultfd.MODE_MISSING);
            assertEquals(P, uffd.poison(a, P, 0));
            FutureTask<Long> writer = writeOut(out, a, P);
            ExecutionException e = assertThrows(ExecutionException.class, () -> writer.get(WAIT.toSeconds(), TimeUnit.SECONDS));
            SyscallException cause = assertInstanceOf(SyscallException.class, e.getCause());
            assertEquals(Errno.EFAULT, cause.errnoEnum(), cause.getMessage());
            assertNull(uffd.read(), "a poisoned page is resolved: no fault event");
            try (Pagemap pm = Pagemap.openSelf()) {
                PagemapEntry marker = pm.entry(a);
                System.out.println("UFFDIO_POISON page " + marker);
                assertFalse(marker.present(), "a poison marker, no page: " + marker);
            }
        } finally {
            Posix.close(out);
            Mman.munmap(a, P);
        }
    }

    @Test
    void hugetlbMissingFaultIsServedByOneCopyOfTheHugePage() throws Exception {
        io.guestmem.host.HugePageSize size = io.guestmem.host.HugePagePools.sizes().stream()
                .filter(h -> h.bytes() == 2L << 20).findFirst().orElse(null);
        assumeTrue(size != null, "this kernel offers no 2 MiB hugetlb pool");
        // one surplus page, given back when the test ends (and by the pool guardian if the JVM dies)
        try (io.guestmem.host.HugePagePools.Reservation res = io.guestmem.host.HugePagePools.raise(size, 1)) {
            hugetlbMissingFault();
        }
    }

    private void hugetlbMissingFault() throws Exception {
        long huge = 2L << 20;
        Userfaultfd.Api offered;
        try (Userfaultfd probe = Userfaultfd.open(false)) {
            offered = probe.api(0);
        }
        assumeTrue(offered.has(Userfaultfd.FEATURE_MISSING_HUGETLBFS), "no FEATURE_MISSING_HUGETLBFS");

        long a;
        try {
            a = Mman.mmap(0, huge, Mman.PROT_READ | Mman.PROT_WRITE,
                    Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS | Mman.MAP_HUGETLB | (21 << Mman.MAP_HUGE_SHIFT), -1, 0);
        } catch (SyscallException e) {
            assumeTrue(!e.is(Errno.ENOMEM), "the free 2 MiB page went to someone else: " + e.getMessage());
            throw e;
        }
        long src = anon(huge);
        int out = Memfd.create("uffd-out", 0);
        try (Arena arena = Arena.ofConfined(); Pagemap pm = Pagemap.openSelf()) {
            pattern(src, huge, 0x4242);
            try (Userfaultfd uffd = Userfaultfd.open(false)) {
                uffd.api(0);
                long ioctls = uffd.register(a, huge, Userfaultfd.MODE_MISSING);
                assertEquals(RANGE_COPY, ioctls & RANGE_COPY, "range ioctls " + Fmt.hex(ioctls));
                assertEquals(0, ioctls & RANGE_ZEROPAGE, "hugetlb has no zeropage: " + Fmt.hex(ioctls));
                FutureTask<Long> writer = writeOut(out, a, huge);
                Userfaultfd.Pagefault f = pagefault(uffd);
                assertEquals(a, f.address());
                assertEquals(Errno.EINVAL, assertThrows(SyscallException.class, () -> uffd.copy(a, src, P, 0)).errnoEnum(),
                        "a base page is not a unit of hugetlb");
                assertEquals(huge, uffd.copy(a, src, huge, 0));
                assertEquals(huge, writer.get(WAIT.toSeconds(), TimeUnit.SECONDS));
                assertEquals(Errno.EEXIST, assertThrows(SyscallException.class, () -> uffd.copy(a, src, huge, 0)).errnoEnum());
                assertNull(uffd.read());
            }
            assertEquals(-1, readBack(arena, out, huge).mismatch(seg(src, huge)));
            PagemapEntry e = present(pm, a);
            System.out.println("hugetlb UFFDIO_COPY page " + e);
            if (pm.pfnVisible()) {
                try (KPageFlags kpf = KPageFlags.open()) {
                    Set<KPageFlag> flags = kpf.flags(e.pfn().orElseThrow());
                    assertTrue(flags.contains(KPageFlag.HUGE), flags.toString());
                }
            }
        } finally {
            Posix.close(out);
            Mman.munmap(a, huge);
            Mman.munmap(src, huge);
        }
    }
}
