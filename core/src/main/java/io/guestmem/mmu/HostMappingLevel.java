package io.guestmem.mmu;

import io.guestmem.memslot.Memslot;
import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.PagemapScan;
import io.guestmem.procfs.Vma;

/**
 * The host mapping level of an hva and the largest level a guest frame may be mapped at: x86's
 * {@code host_pfn_mapping_level} and {@code kvm_mmu_max_mapping_level}, over what the kernel tells userspace.
 *
 * <h2>hostMappingLevel(hva)</h2>
 * <ol>
 * <li>pagemap: not present → {@link MappingLevel#PAGE}. Never "none": the review of "KVM: x86/mmu: fix
 *     potential races when walking host page table" (Mingwei Zhang, 2022,
 *     <a href="https://lore.kernel.org/all/20220429031757.2042406-1-mizhang@google.com/">lore</a>) rejected PG_LEVEL_NONE
 *     ("Returning PG_LEVEL_4K for a non-present entry is safe; if it happens, MMU notifiers will force a
 *     retry"), and the walk was merged inline into
 *     {@code host_pfn_mapping_level} (commit 44187235cbcc).</li>
 * <li>PAGEMAP_SCAN of the page without {@code PAGE_IS_HUGE} → PAGE (a PTE-mapped THP is not huge here, as in
 *     the kernel's walk).</li>
 * <li>Huge: kpageflags HUGE (or, with hidden pfns, smaps' {@code ht}) means hugetlb → the level of the VMA's
 *     {@code KernelPageSize} ({@link LevelSizes#levelFor}); otherwise a PMD-mapped THP (kpageflags THP) → PMD.</li>
 * </ol>
 * The answer can be stale as soon as it is returned (the page can be split, collapsed, migrated, unmapped):
 * like KVM's, it may only be consumed by a caller that took {@link MmuNotifier#sequence()} before and checks
 * {@link MmuNotifier#retryGfn} after ({@code mmu_invalidate_retry_gfn}), or that uses it only to decide what
 * to zap. Invalidations the notifier cannot see (khugepaged collapse, migration) are listed in
 * {@link MmuNotifier}'s class comment.
 *
 * <h2>maxMappingLevel(slot, gfn)</h2>
 * {@code min(host level, slot cap)}; the slot cap is base pages when the slot logs dirty pages or is locked
 * ({@link SlotLocks}), else the highest level whose aligned block around {@code gfn} passes KVM's
 * {@code disallow_lpage} rules ({@link #disallowLpage}).
 */
public final class HostMappingLevel {
    private final HostView view;
    private final LevelSizes sizes;
    private final SlotLocks locks;

    /** Levels over {@code view} with {@code sizes}; {@code locks} says which slots are locked ({@link SlotLocks#NONE}: none). */
    public HostMappingLevel(HostView view, LevelSizes sizes, SlotLocks locks) {
        this.view = view;
        this.sizes = sizes;
        this.locks = java.util.Objects.requireNonNull(locks, "locks (SlotLocks.NONE for none)");
    }

    public LevelSizes sizes() {
        return sizes;
    }

    /** The level the host maps {@code hva} at (see the class comment). Trust it only under the retry check. */
    public MappingLevel hostMappingLevel(long hva) {
        long page = sizes.geometry().pageSize();
        long hvaPage = hva & -page;
        long raw = view.entry(hvaPage);
        if (!PagemapEntry.isPresent(raw)) return MappingLevel.PAGE;
        long cats = view.categories(hvaPage, page);
        if ((cats & PagemapScan.HUGE) == 0) return MappingLevel.PAGE;
        long pfn = view.pfnOf(raw);
        long flags = view.flags(pfn);
        boolean hugetlb;
        if (flags != RefcountedPage.UNKNOWN_FLAGS) {
            hugetlb = KPageFlag.HUGE.in(flags);
            if (!hugetlb && !KPageFlag.THP.in(flags)) return MappingLevel.PAGE; // huge but neither: be safe
        } else {
            Vma v = view.vma(hvaPage);
            hugetlb = v != null && v.hugetlb();
        }
        if (!hugetlb) return MappingLevel.PMD;
        Vma v = view.vma(hvaPage);
        if (v == null || v.kernelPageSize() <= 0) return MappingLevel.PAGE; // unmapped meanwhile
        return sizes.levelFor(v.kernelPageSize());
    }

    /** {@link #hostMappingLevel} of {@code gfn}'s hva in {@code slot} capped by {@link #slotMaxLevel}. */
    public MappingLevel maxMappingLevel(Memslot slot, long gfn) {
        if (!slot.containsGfn(gfn)) throw new IllegalArgumentException("gfn 0x" + Long.toHexString(gfn) + " not in " + slot);
        MappingLevel cap = slotMaxLevel(slot, gfn, sizes, locks.isLocked(slot));
        if (cap == MappingLevel.PAGE) return cap;
        long hva = slot.userspaceAddr() + ((gfn - slot.baseGfn()) << sizes.geometry().shift());
        return hostMappingLevel(hva).min(cap);
    }

    /**
     * The largest level the slot allows for {@code gfn}, before looking at the host: PAGE when dirty logging
     * or locked; else the highest level (down from {@link LevelSizes#maxLevel()}) not disallowed. Pure.
     */
    public static MappingLevel slotMaxLevel(Memslot slot, long gfn, LevelSizes sizes, boolean locked) {
        if (slot.logsDirty() || locked) return MappingLevel.PAGE;
        MappingLevel level = sizes.maxLevel();
        while (level != MappingLevel.PAGE && disallowLpage(slot, gfn, level, sizes)) level = level.lower();
        return level;
    }

    /**
     * KVM's {@code disallow_lpage} for the {@code level} block holding {@code gfn} ({@code kvm_alloc_memslot_metadata}):
     * set when the slot's first block is cut by a misaligned {@code base_gfn}, when its last block is cut by a
     * misaligned end, and for every block when {@code (base_gfn ^ (userspace_addr >> PAGE_SHIFT)) & (pages - 1)}
     * (guest and host addresses not congruent modulo the block size). Pure.
     */
    public static boolean disallowLpage(Memslot slot, long gfn, MappingLevel level, LevelSizes sizes) {
        if (level == MappingLevel.PAGE) return false;
        long pages = sizes.pages(level);
        long ugfn = slot.userspaceAddr() >>> sizes.geometry().shift();
        if (((slot.baseGfn() ^ ugfn) & (pages - 1)) != 0) return true;
        long blockStart = gfn & -pages;
        return blockStart < slot.baseGfn() || blockStart + pages > slot.endGfn();
    }
}
