package io.guestmem.cli;

import com.fasterxml.jackson.annotation.JsonInclude;
import java.util.List;
import java.util.Map;

/**
 * What {@code guestmem demo} found, as printed by {@code --json}. Every number is read from the kernel
 * (pagemap, kpageflags, smaps, /proc/self/status) or from a real KVM guest, never computed from the layout.
 * {@code snapshot} and {@code migration} are there with {@code --migrate} only.
 */
record DemoReport(List<Slot> slots, Kvm kvm, Memlock memlock, Verified verified, List<String> notes,
                  @JsonInclude(JsonInclude.Include.NON_NULL) Snapshot snapshot,
                  @JsonInclude(JsonInclude.Include.NON_NULL) Migration migration) {

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

    /**
     * {@code --migrate}, first half: a second VM's guest wrote every page, its memory was saved to a snapshot
     * ({@link io.guestmem.snapshot.SnapshotInfo}), and a new KVM VM got it back lazily through userfaultfd
     * ({@link io.guestmem.snapshot.LazyRestoreStats}) while its guest checked every page and wrote a new value.
     *
     * @param backings      the slots' backings (those a restore can create: anon, thp, memfd)
     * @param pagesSaved    pages the snapshot holds as data (the writer's count)
     * @param zeroPages     pages present but all zero: recorded, not written
     * @param untouchedPages pages never touched: not in the file
     * @param bytesWritten  the snapshot file's size
     * @param writeMs       the write, fsync and rename
     * @param slots         the file's own manifest, slot by slot
     * @param restoreMs     from the lazy restore's start until every data block had arrived
     * @param firstFaultMicros from the start to the first userfaultfd fault's service (-1: none)
     * @param faultsServed  userfaultfd faults served (the guest's, through KVM)
     * @param accessorServed blocks the host's accessors brought in
     * @param prefetched    blocks the background prefetcher brought in
     * @param zeroBlocks    blocks served as zeros
     * @param blocksServed  blocks served in all
     * @param dataBlocks    blocks holding recorded data
     * @param bytesRead     snapshot bytes read (and checked)
     * @param failures      blocks that could not be served (poisoned)
     * @param verified      guest pages that held the snapshot's value for the restored guest and read back its
     *                      new value from the host, of those checked
     */
    record Snapshot(List<String> backings, long pagesSaved, long zeroPages, long untouchedPages, long bytesWritten,
                    double writeMs, List<SnapshotSlot> slots, double restoreMs, double firstFaultMicros, long faultsServed,
                    long accessorServed, long prefetched, long zeroBlocks, long blocksServed, long dataBlocks,
                    long bytesRead, long failures, Verified verified) {}

    /** One slot of the snapshot's manifest: its pages held as data and as recorded zeros. */
    record SnapshotSlot(int id, String backing, long gpa, long sizeBytes, long dataPages, long zeroPages) {}

    /**
     * {@code --migrate}, second half: the restored VM migrated live to another process while its guest rewrote
     * every page pass after pass ({@link io.guestmem.migration.MigrationStats}, the source's view).
     *
     * @param rounds            pre-copy rounds, the full one included, not the last one after the pause
     * @param pagesPerRound     pages sent in each round, the last (after the pause) included
     * @param pagesSent         pages sent in all
     * @param bytesSent         bytes on the wire
     * @param downtimeMs        from the guest's pause to the last page on the wire
     * @param totalMs           from the header to the destination's result
     * @param stopReason        why pre-copy stopped
     * @param guestPasses       passes over every page the source's guest made while pre-copy ran
     * @param checksumAgree     pages whose CRC32C agreed on both sides
     * @param checksumChecked   pages compared (every page of every slot)
     * @param destinationPid    the destination process
     * @param pagesReceived     pages the destination counted
     * @param verified          guest pages the destination's guest found as the source's guest left them (and the
     *                          destination's host read back its new value), of those checked
     */
    record Migration(int rounds, List<Long> pagesPerRound, long pagesSent, long bytesSent, double downtimeMs,
                     double totalMs, String stopReason, long guestPasses, long checksumAgree, long checksumChecked,
                     long destinationPid, long pagesReceived, Verified verified) {}
}
