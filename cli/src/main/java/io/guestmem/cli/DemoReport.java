package io.guestmem.cli;

import java.util.List;
import java.util.Map;

/**
 * What {@code guestmem demo} found, as printed by {@code --json}. Every number is read from the kernel
 * (pagemap, kpageflags, smaps, /proc/self/status) or from a real KVM guest, never computed from the layout.
 */
record DemoReport(List<Slot> slots, Kvm kvm, Memlock memlock, Verified verified, List<String> notes) {

    /**
     * One memslot.
     *
     * @param pagesPresent   base pages pagemap reports present
     * @param refcounted     present pages whose follow_pfn result holds a refcounted struct page
     * @param nonRefcounted  pages follow_pfn answered without one (zero page under the 6.13 rule, PFNMAP)
     * @param levels         base pages by host mapping level ("4K", "2M", "1G")
     * @param pfnObservable  false where the kernel hides the pfns (PFNMAP ranges, no CAP_SYS_ADMIN)
     * @param pinKind        how a locked slot's pages are held ({@code LONGTERM_PIN} or {@code MLOCK}), null unlocked
     */
    record Slot(int id, long gfnStart, long gfnEnd, String backing, long sizeBytes, long pagesPresent,
                long refcounted, long nonRefcounted, Map<String, Long> levels, boolean locked, long pinnedBytes,
                String pinKind, boolean guestWritten, boolean pfnObservable, String note) {}

    /** KVM: whether /dev/kvm could be used, whether the guest ran, the dirty log's view of its writes. */
    record Kvm(boolean available, boolean guestRan, String reason, long exits, Long dirtyLogged,
               Long dirtyExpected) {}

    /**
     * RLIMIT_MEMLOCK, VmLck and VmPin around the demo's slot lock (a long-term pin shows in VmPin, an mlock in
     * VmLck); {@code pinKind} is how the locked slot is held; {@code refused} says what did not fit, and why.
     */
    record Memlock(long limitBytes, boolean capIpcLock, long vmLckBeforeBytes, long vmLckAfterBytes,
                   long vmPinBeforeBytes, long vmPinAfterBytes, String lockedSlot, String pinKind, String refused) {}

    /** Guest pages whose value, pfn and classification all agree with the kernel, out of those checked. */
    record Verified(long agree, long total, List<String> disagreements) {}
}
