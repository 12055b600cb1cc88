package io.guestmem.lock;

import java.util.List;

/**
 * The locked-memory budget at one instant, from the kernel (VmLck, VmPin, RLIMIT_MEMLOCK, CAP_IPC_LOCK) and
 * this library's charges. Pages are host base pages.
 *
 * @param slots          every locked slot, its charge and how it is pinned
 * @param lockedPages    the sum of the locked slots' {@code npages}
 * @param vmLckBytes     VmLck of /proc/self/status (mlocked slots, and whatever else the process mlocked)
 * @param vmPinBytes     VmPin of /proc/self/status (long-term pinned slots, and any other long-term pins)
 * @param uncountedPages charged pages of mlocked slots that VmLck does not include (see {@link MemlockAccount})
 * @param lockedVmPages  {@code (VmLck + VmPin) / PAGE_SIZE + uncountedPages}: the {@code locked_vm} checked
 *                       against the limit
 * @param limitBytes     soft RLIMIT_MEMLOCK, -1 when unlimited
 * @param capIpcLock     the calling thread has CAP_IPC_LOCK (the limit does not apply)
 * @param headroomPages  pages one more lock may still take: {@code limit - locked_vm} (never negative), or
 *                       {@link Long#MAX_VALUE} with CAP_IPC_LOCK or no limit
 */
public record MemlockStatus(List<SlotCharge> slots, long lockedPages, long vmLckBytes, long vmPinBytes,
                            long uncountedPages, long lockedVmPages, long limitBytes, boolean capIpcLock,
                            long headroomPages) {
    public MemlockStatus {
        slots = List.copyOf(slots);
    }

    public boolean unlimited() {
        return capIpcLock || limitBytes < 0;
    }
}
