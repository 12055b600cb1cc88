package io.guestmem.lock;

/**
 * How a locked slot's pages are held in place.
 * <ul>
 * <li>{@link #LONGTERM_PIN}: pinned as the RFC pins them, {@code pin_user_pages(FOLL_WRITE | FOLL_LONGTERM)},
 *     taken through io_uring buffer registration ({@link LongTermPinning}). The pages cannot move while
 *     pinned: migration, compaction, NUMA balancing and THP collapse all skip a page whose reference count
 *     says it is pinned. The kernel charges them itself: {@code VmPin}, and RLIMIT_MEMLOCK without
 *     CAP_IPC_LOCK.</li>
 * <li>{@link #MLOCK}: mlock ({@link MlockPinning}), used where a page cannot be pinned writable (a READ lock
 *     of memory mapped without write permission: FOLL_WRITE would fail). mlock keeps pages resident, not in
 *     place: compaction and migration may still move them, so a recorded pfn may go stale without any
 *     invalidation. Counted in {@code VmLck}.</li>
 * </ul>
 */
public enum PinKind {
    MLOCK,
    LONGTERM_PIN
}
