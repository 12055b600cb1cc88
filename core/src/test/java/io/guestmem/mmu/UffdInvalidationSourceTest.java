package io.guestmem.mmu;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.sys.Mman;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** madvise, mremap and munmap on real guest memory, by code that does not tell the library. */
@Timeout(120)
class UffdInvalidationSourceTest {

    @Test
    void changesBehindTheLibrarysBackBecomeInvalidations() throws Exception {
        PageGeometry g = PageGeometry.host();
        long p = g.pageSize(), len = 16 * p;
        long a = Mman.mmap(0, len, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        long target = Mman.mmap(0, 4 * p, Mman.PROT_NONE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        boolean tailUnmapped = false;
        Memslots ms = new Memslots(Memslots.Config.of(g));
        MmuNotifier n = new MmuNotifier(ms);
        List<String> heard = new CopyOnWriteArrayList<>();
        n.addListener(inv -> heard.add(String.format("hva +%d..+%d gfn %s", (inv.hvaStart() - a) / p,
                (inv.hvaEnd() - a) / p, inv.ranges().stream()
                        .map(r -> Long.toHexString(r.start()) + "-" + Long.toHexString(r.end())).toList())));
        try (UffdInvalidationSource src = UffdInvalidationSource.start(n)) {
            Mman.madvise(a, len, Mman.MADV_POPULATE_WRITE);
            ms.setMemslot(0, 0, 0, 0x100 * p, len, a);
            src.watch(a, len);
            assertEquals(16, Mman.residentPages(a, len));

            // MADV_DONTNEED of pages 4-5 (this thread waits until the source read the event)
            long seq = n.sequence();
            Mman.madvise(a + 4 * p, 2 * p, Mman.MADV_DONTNEED);
            awaitEvents(src, 1);
            assertEquals(List.of("hva +4..+6 gfn [104-106]"), heard);
            assertTrue(n.retryGfn(0x104, seq));
            assertEquals(0, Mman.residentPages(a + 4 * p, 2 * p), "the kernel did drop them");
            assertEquals(14, Mman.residentPages(a, len));

            // the registration makes no access fault to the source: touching the dropped page just works
            MemorySegment m = MemorySegment.ofAddress(a).reinterpret(len);
            m.set(ValueLayout.JAVA_LONG, 4 * p, 0x1234);
            assertEquals(0x1234, m.get(ValueLayout.JAVA_LONG, 4 * p));

            // mremap of pages 8-11 elsewhere: REMAP (old and new range), then UNMAP of the old range
            heard.clear();
            long seq2 = n.sequence();
            assertEquals(target, Mman.mremap(a + 8 * p, 4 * p, 4 * p, Mman.MREMAP_MAYMOVE | Mman.MREMAP_FIXED, target));
            awaitEvents(src, 3); // REMAP, then UNMAP of the source range
            assertTrue(heard.contains("hva +8..+12 gfn [108-10c]"), heard.toString());
            assertTrue(n.retryGfn(0x10a, seq2));

            // munmap of pages 12-15
            heard.clear();
            long seq3 = n.sequence();
            Mman.munmap(a + 12 * p, 4 * p);
            tailUnmapped = true;
            awaitEvents(src, 4);
            assertTrue(heard.contains("hva +12..+16 gfn [10c-110]"), heard.toString());
            assertTrue(n.retryGfn(0x10f, seq3));
            assertEquals(0, n.inProgress());
            assertNull(src.lastFailure());
        } finally {
            Mman.munmap(a, tailUnmapped ? 8 * p : len);
            Mman.munmap(target, 4 * p);
        }
    }

    private static void awaitEvents(UffdInvalidationSource src, long atLeast) throws InterruptedException {
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (src.eventsHandled() < atLeast && System.nanoTime() < deadline) Thread.sleep(1);
        assertTrue(src.eventsHandled() >= atLeast, "events handled: " + src.eventsHandled());
    }
}
