package io.guestmem.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.BitSet;

/**
 * NUMA memory policy: {@code mbind} and {@code get_mempolicy} through the raw syscalls (they live in
 * libnuma, not glibc). Node masks are {@link BitSet}s of up to {@link #MAX_NODES} nodes.
 */
public final class Mempolicy {
    private Mempolicy() {}

    /** The policy modes of {@code include/uapi/linux/mempolicy.h}. */
    public enum Mode {
        DEFAULT(0), PREFERRED(1), BIND(2), INTERLEAVE(3), LOCAL(4), PREFERRED_MANY(5), WEIGHTED_INTERLEAVE(6);

        public final int value;

        Mode(int value) {
            this.value = value;
        }

        static Mode of(int v) {
            for (Mode m : values()) if (m.value == v) return m;
            throw new IllegalArgumentException("unknown mempolicy mode " + v);
        }
    }

    public static final int MPOL_MF_STRICT = 1, MPOL_MF_MOVE = 2;
    private static final int MPOL_F_NODE = 1, MPOL_F_ADDR = 2;
    /** Nodes a mask can name here: 16 words of 64 bits (the kernel's default MAX_NUMNODES is far lower). */
    public static final int MAX_NODES = 1024;
    private static final int WORDS = MAX_NODES / 64;
    /**
     * The kernel reads {@code maxnode - 1} bits (mm/mempolicy.c get_nodes: "--maxnode"), as numactl
     * knows; passing bits + 1 makes it read exactly our mask.
     */
    private static final long MAXNODE = MAX_NODES + 1;

    /** The policy of an address: its mode and node mask. */
    public record Policy(Mode mode, BitSet nodes) {}

    /** {@code mbind(addr, len, mode, nodes, maxnode, flags)}. */
    public static void mbind(long addr, long len, Mode mode, BitSet nodes, int flags) {
        if (nodes.length() > MAX_NODES) throw new IllegalArgumentException("node " + (nodes.length() - 1) + " beyond " + MAX_NODES);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment mask = a.allocate(WORDS * 8L, 8);
            long[] words = nodes.toLongArray();
            for (int i = 0; i < words.length; i++) mask.setAtIndex(ValueLayout.JAVA_LONG, i, words[i]);
            long nodeArg = nodes.isEmpty() ? 0 : mask.address();
            long r = Posix.syscallRaw(Arch.CURRENT.sysMbind(), addr, len, mode.value, nodeArg,
                    nodes.isEmpty() ? 0 : MAXNODE, flags);
            if (r < 0) throw new SyscallException((int) -r, "mbind(" + Fmt.hex(addr) + ", " + Fmt.size(len) + ", MPOL_"
                    + mode + ", nodes=" + nodes + ", flags=" + flags + ")");
        }
    }

    /** {@code get_mempolicy(..., addr, MPOL_F_ADDR)}: the policy governing {@code addr}. */
    public static Policy policyOf(long addr) {
        return get(addr, MPOL_F_ADDR);
    }

    /** {@code get_mempolicy(..., 0, 0)}: this thread's default policy. */
    public static Policy threadPolicy() {
        return get(0, 0);
    }

    /** {@code get_mempolicy(..., addr, MPOL_F_NODE | MPOL_F_ADDR)}: the node the page at {@code addr} is on. */
    public static int nodeOf(long addr) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment mode = a.allocate(ValueLayout.JAVA_INT);
            long r = Posix.syscallRaw(Arch.CURRENT.sysGetMempolicy(), mode.address(), 0, 0, addr, MPOL_F_NODE | MPOL_F_ADDR, 0);
            if (r < 0) throw new SyscallException((int) -r, "get_mempolicy(" + Fmt.hex(addr) + ", MPOL_F_NODE|MPOL_F_ADDR)");
            return mode.get(ValueLayout.JAVA_INT, 0);
        }
    }

    /**
     * {@code move_pages(0, n, pages, nodes, status, MPOL_MF_MOVE)}: asks the kernel to migrate each page of
     * {@code pages} to {@code node} (or, with {@code node < 0}, only reports where each page is: nodes NULL).
     * Returns one status per page: the node the page is on afterwards, or a negative errno (-EBUSY for a page
     * the kernel could not isolate or migrate, e.g. a pinned one; -ENOENT for an absent page). A page already
     * on {@code node} is not migrated at all ({@code add_page_for_migration} skips it).
     *
     * @return the per-page status; the call's own return (how many pages were not migrated) is not needed by it
     */
    public static int[] movePages(long[] pages, int node) {
        try (Arena a = Arena.ofConfined()) {
            int n = pages.length;
            MemorySegment addrs = a.allocate(8L * Math.max(n, 1), 8);
            MemorySegment nodes = a.allocate(4L * Math.max(n, 1), 4);
            MemorySegment status = a.allocate(4L * Math.max(n, 1), 4);
            for (int i = 0; i < n; i++) {
                addrs.setAtIndex(ValueLayout.JAVA_LONG, i, pages[i]);
                nodes.setAtIndex(ValueLayout.JAVA_INT, i, node);
            }
            long r = Posix.syscallRaw(Arch.CURRENT.sysMovePages(), 0, n, addrs.address(), node < 0 ? 0 : nodes.address(),
                    status.address(), MPOL_MF_MOVE);
            if (r < 0) throw new SyscallException((int) -r, "move_pages(self, " + n + " pages, node " + node + ")");
            int[] out = new int[n];
            for (int i = 0; i < n; i++) out[i] = status.getAtIndex(ValueLayout.JAVA_INT, i);
            return out;
        }
    }

    static Policy get(long addr, int flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment mode = a.allocate(ValueLayout.JAVA_INT);
            MemorySegment mask = a.allocate(WORDS * 8L, 8);
            long r = Posix.syscallRaw(Arch.CURRENT.sysGetMempolicy(), mode.address(), mask.address(), MAXNODE, addr, flags, 0);
            if (r < 0) throw new SyscallException((int) -r, "get_mempolicy(" + Fmt.hex(addr) + ", flags=" + flags + ")");
            // The mode word may carry MPOL_F_STATIC_NODES/RELATIVE_NODES in its high bits.
            int m = mode.get(ValueLayout.JAVA_INT, 0) & 0xffff;
            return new Policy(Mode.of(m), BitSet.valueOf(mask.toArray(ValueLayout.JAVA_LONG)));
        }
    }
}
