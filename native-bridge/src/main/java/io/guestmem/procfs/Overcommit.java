package io.guestmem.procfs;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The kernel's overcommit policy ({@code /proc/sys/vm/overcommit_memory}) and the {@code /proc/meminfo}
 * figures it judges a mapping by: what decides whether a mapping that is charged in full when it is created
 * (private writable anonymous memory mapped without MAP_NORESERVE, shared anonymous memory likewise) fits, and
 * whether MAP_NORESERVE is honored at all. See the kernel's Documentation/mm/overcommit-accounting.rst
 * (https://docs.kernel.org/mm/overcommit-accounting.html) and {@code __vm_enough_memory} in mm/util.c.
 *
 * @param mode        vm.overcommit_memory
 * @param memTotal    MemTotal: the kernel's {@code totalram_pages()}, in bytes
 * @param swapTotal   SwapTotal: {@code total_swap_pages}, in bytes
 * @param commitLimit CommitLimit: the limit of {@link Mode#NEVER}, in bytes
 * @param committedAs Committed_AS: what is charged now, system-wide, in bytes
 */
public record Overcommit(Mode mode, long memTotal, long swapTotal, long commitLimit, long committedAs) {

    /** The values of vm.overcommit_memory, named as the kernel's {@code OVERCOMMIT_*} constants. */
    public enum Mode {
        /** 0, the default: only an "obvious overcommit" is refused, one charge larger than RAM + swap. */
        GUESS,
        /** 1: every charge succeeds. */
        ALWAYS,
        /**
         * 2, strict accounting: the sum of charges stays below CommitLimit, and MAP_NORESERVE is ignored for
         * everything but hugetlb ({@code do_mmap} sets VM_NORESERVE only when the mode is not NEVER).
         */
        NEVER;

        static Mode of(int value) {
            return switch (value) {
                case 0 -> GUESS;
                case 1 -> ALWAYS;
                case 2 -> NEVER;
                default -> throw new ProcfsException("vm.overcommit_memory has the unknown value " + value);
            };
        }
    }

    /** The policy and figures now. */
    public static Overcommit now() {
        Mode mode = Mode.of(Integer.parseInt(read("/proc/sys/vm/overcommit_memory").trim()));
        long mem = -1, swap = -1, limit = -1, committed = -1;
        for (String line : read("/proc/meminfo").split("\n")) {
            if (line.startsWith("MemTotal:")) mem = kb(line);
            else if (line.startsWith("SwapTotal:")) swap = kb(line);
            else if (line.startsWith("CommitLimit:")) limit = kb(line);
            else if (line.startsWith("Committed_AS:")) committed = kb(line);
        }
        if (mem < 0 || swap < 0 || limit < 0 || committed < 0)
            throw new ProcfsException("/proc/meminfo lacks MemTotal, SwapTotal, CommitLimit or Committed_AS");
        return new Overcommit(mode, mem, swap, limit, committed);
    }

    /** Whether the kernel honors MAP_NORESERVE for non-hugetlb mappings (every mode but {@link Mode#NEVER}). */
    public boolean honorsNoReserve() {
        return mode != Mode.NEVER;
    }

    /**
     * Whether {@link Mode#GUESS}'s heuristic refuses one charge of {@code bytes}: since Linux 5.2 ("mm: fix
     * false-positive OVERCOMMIT_GUESS failures",
     * https://lore.kernel.org/all/20190412191418.26333-1-hannes@cmpxchg.org/) it refuses exactly a charge of more pages than
     * {@code totalram_pages() + total_swap_pages}, whatever is in use. False in the other modes, whose rules
     * are different (ALWAYS refuses nothing; NEVER depends on everything charged system-wide).
     */
    public boolean heuristicRefuses(long bytes) {
        return mode == Mode.GUESS && bytes > memTotal + swapTotal;
    }

    private static long kb(String line) {
        String v = line.substring(line.indexOf(':') + 1).trim();
        int sp = v.indexOf(' ');
        return Long.parseLong(sp < 0 ? v : v.substring(0, sp)) * (v.endsWith("kB") ? 1024 : 1);
    }

    private static String read(String path) {
        try {
            return Files.readString(Path.of(path));
        } catch (IOException e) {
            throw new ProcfsException("cannot read " + path + ": " + e.getMessage(), e);
        }
    }
}
