package io.guestmem.migration;

import java.util.List;

/**
 * What a migration did, as either side saw it.
 *
 * @param rounds        pre-copy rounds, the full first one included, not counting the last one after the pause
 * @param pagesPerRound pages sent in each round, the last (after the pause) included
 * @param pagesSent     pages sent in all (data and zero)
 * @param bytesSent     bytes on the wire in all
 * @param downtimeMs    from the guest's pause to the last page on the wire (the source's count; -1 at the
 *                      destination, which does not see the pause)
 * @param totalMs       from the header to the result
 * @param agree         pages whose checksum agreed on both sides at the switch
 * @param checked       pages checked (every page of every slot)
 * @param stopReason    why pre-copy stopped (the convergence rule's answer)
 * @param postCopyPages pages the destination pulled after the switch (0 without post-copy)
 */
public record MigrationStats(int rounds, List<Long> pagesPerRound, long pagesSent, long bytesSent, double downtimeMs,
                             double totalMs, long agree, long checked, String stopReason,
                             long postCopyPages) {
    public MigrationStats {
        pagesPerRound = List.copyOf(pagesPerRound);
    }

    public boolean verified() {
        return checked > 0 && agree == checked;
    }
}
