package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/**
 * Real userfaultfd events. Non-cooperative events block the thread that causes them until they are
 * read, so madvise/munmap/mremap run on a second thread while this one reads.
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
}
