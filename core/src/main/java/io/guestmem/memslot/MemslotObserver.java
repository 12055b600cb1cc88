package io.guestmem.memslot;

/**
 * Sees every memslot change before it is published, under the writer's lock: the KVM mirror
 * ({@code KVM_SET_USER_MEMORY_REGION2}), the slot locker and the pfn caches hook in here. Throwing
 * from {@link #beforeCommit} vetoes the change: nothing is published, observers already called get
 * {@link #rolledBack} in reverse order, and the exception reaches the caller unchanged.
 */
public interface MemslotObserver {
    void beforeCommit(MemslotChange change);

    /** The change this observer accepted was vetoed by a later observer: undo what beforeCommit did. */
    default void rolledBack(MemslotChange change) {}

    /** The change is published (the new set is visible to readers). */
    default void committed(MemslotChange change) {}
}
