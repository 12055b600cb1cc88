package io.guestmem.snapshot;

/**
 * What a lazy restore has done so far.
 *
 * @param faultsServed     userfaultfd faults served (the guest's, through KVM, or any kernel access)
 * @param accessorServed   blocks the host's own accessors brought in before touching them
 * @param prefetched       blocks the background prefetcher brought in
 * @param zeroBlocks       blocks served as zeros (nothing recorded in them)
 * @param blocksServed     blocks served in all
 * @param dataBlocks       blocks that hold recorded data (what must arrive before the restore is complete)
 * @param bytesRead        bytes of snapshot data read (and checked)
 * @param firstFaultMicros time from the start to the first fault's service, microseconds (-1: none yet)
 * @param restoreMs        time from the start until every data block had arrived (-1: not yet)
 * @param failures         blocks that could not be served (poisoned)
 */
public record LazyRestoreStats(long faultsServed, long accessorServed, long prefetched, long zeroBlocks, long blocksServed,
                               long dataBlocks, long bytesRead, double firstFaultMicros, double restoreMs, long failures) {
    public boolean complete() {
        return restoreMs >= 0;
    }
}
