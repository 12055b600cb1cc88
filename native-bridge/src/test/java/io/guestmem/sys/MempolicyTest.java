package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.ProcText;
import java.util.BitSet;
import org.junit.jupiter.api.Test;

/** mbind / get_mempolicy round trip, checked in /proc/self/numa_maps. */
class MempolicyTest {
    static final long P = Posix.PAGE_SIZE;

    @Test
    void bindRoundTripsAndShowsInNumaMaps() {
        long len = 8 * P;
        long a = Mman.mmap(0, len, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        try {
            BitSet node0 = new BitSet();
            node0.set(0);
            for (Mempolicy.Mode m : new Mempolicy.Mode[] {Mempolicy.Mode.BIND, Mempolicy.Mode.INTERLEAVE, Mempolicy.Mode.PREFERRED}) {
                Mempolicy.mbind(a, len, m, node0, 0);
                Mempolicy.Policy p = Mempolicy.policyOf(a);
                assertEquals(m, p.mode());
                assertEquals(node0, p.nodes());
                String line = ProcText.numaMapsOf(a);
                assertNotNull(line, "numa_maps line for the VMA");
                String expect = switch (m) {
                    case BIND -> "bind:0";
                    case INTERLEAVE -> "interleave:0";
                    default -> "prefer:0";
                };
                assertTrue(line.contains(expect), line);
            }
            Mman.madvise(a, len, Mman.MADV_POPULATE_WRITE);
            assertEquals(0, Mempolicy.nodeOf(a));
            Mempolicy.mbind(a, len, Mempolicy.Mode.DEFAULT, new BitSet(), 0);
            assertEquals(Mempolicy.Mode.DEFAULT, Mempolicy.policyOf(a).mode());
        } finally {
            Mman.munmap(a, len);
        }
    }

    @Test
    void failuresNameErrnoAndCall() {
        long a = Mman.mmap(0, P, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        try {
            SyscallException e = assertThrows(SyscallException.class,
                    () -> Mempolicy.mbind(a, P, Mempolicy.Mode.BIND, new BitSet(), 0));
            assertEquals("EINVAL", e.errnoName());
            assertTrue(e.getMessage().contains("mbind(0x"), e.getMessage());
            BitSet absent = new BitSet();
            absent.set(1000);
            assertEquals("EINVAL", assertThrows(SyscallException.class,
                    () -> Mempolicy.mbind(a, P, Mempolicy.Mode.BIND, absent, 0)).errnoName());
            assertEquals("EINVAL", assertThrows(SyscallException.class,
                    () -> Mempolicy.mbind(a + 1, P, Mempolicy.Mode.DEFAULT, new BitSet(), 0)).errnoName());
        } finally {
            Mman.munmap(a, P);
        }
        assertEquals("EFAULT", assertThrows(SyscallException.class, () -> Mempolicy.policyOf(a)).errnoName());
    }

    @Test
    void movePagesReportsEachPagesNodeAndAbsentPages() {
        long len = 4 * P;
        long a = Mman.mmap(0, len, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        try {
            Mman.madvise(a, 2 * P, Mman.MADV_POPULATE_WRITE); // pages 0 and 1 present, 2 and 3 never touched
            int node = Mempolicy.nodeOf(a);
            int[] where = Mempolicy.movePages(new long[] {a, a + P, a + 2 * P}, -1);
            assertArrayEquals(new int[] {node, node, -Errno.ENOENT.number}, where, "nodes NULL: only where each page is");
            int[] moved = Mempolicy.movePages(new long[] {a, a + P}, node);
            assertArrayEquals(new int[] {node, node}, moved, "to the node a page is on: it stays there");
        } finally {
            Mman.munmap(a, len);
        }
    }
}
