package io.guestmem.procfs;

import java.util.HashMap;
import java.util.Map;

/**
 * The two-letter codes of the {@code VmFlags:} line of {@code /proc/<pid>/smaps} (fs/proc/task_mmu.c,
 * {@code show_smap_vma_flags}). Codes the kernel adds later are kept as strings by {@link Vma#vmFlagCodes()}.
 */
public enum VmFlag {
    READ("rd"), WRITE("wr"), EXEC("ex"), SHARED("sh"), MAYREAD("mr"), MAYWRITE("mw"), MAYEXEC("me"),
    MAYSHARE("ms"), GROWSDOWN("gd"), PFNMAP("pf"), LOCKED("lo"), IO("io"), SEQ_READ("sr"), RAND_READ("rr"),
    DONTCOPY("dc"), DONTEXPAND("de"), LOCKONFAULT("lf"), ACCOUNT("ac"), NORESERVE("nr"), HUGETLB("ht"),
    SYNC("sf"), ARCH_1("ar"), WIPEONFORK("wf"), DONTDUMP("dd"), ARM64_BTI("bt"), SOFTDIRTY("sd"),
    MIXEDMAP("mm"), HUGEPAGE("hg"), NOHUGEPAGE("nh"), MERGEABLE("mg"), UFFD_MISSING("um"), UFFD_WP("uw"),
    MTE("mt"), MTE_ALLOWED("mt"), UFFD_MINOR("ui"), SHADOW_STACK("ss"), DROPPABLE("dp"), SEALED("sl");

    /** The code as smaps prints it. */
    public final String code;

    private static final Map<String, VmFlag> BY_CODE = new HashMap<>();

    static {
        for (VmFlag f : values()) BY_CODE.putIfAbsent(f.code, f);
    }

    VmFlag(String code) {
        this.code = code;
    }

    /** The flag of a code, or null for a code this enum does not know. */
    public static VmFlag ofCode(String code) {
        return BY_CODE.get(code);
    }
}
