package io.guestmem.kvm;

import io.guestmem.kvmapi.KvmCap;
import io.guestmem.kvmapi.KvmIoctls;
import io.guestmem.kvmapi.VmFd;

/**
 * What this KVM offers, read with KVM_CHECK_EXTENSION on the VM fd (some answers, like the guest_memfd flags,
 * depend on the VM type). Nothing here is assumed: a missing capability reads as false/0.
 *
 * @param dirtyLogRingMaxBytes the largest dirty ring in bytes, 0 if no ring is offered: KVM_CAP_DIRTY_LOG_RING's
 *                             answer, or KVM_CAP_DIRTY_LOG_RING_ACQ_REL's where only that one is offered (arm64)
 * @param dirtyLogRingCap      the capability to enable for the ring: KVM_CAP_DIRTY_LOG_RING where offered (x86),
 *                             else KVM_CAP_DIRTY_LOG_RING_ACQ_REL (weakly ordered architectures offer only
 *                             this one), 0 when neither
 * @param manualDirtyLogProtect KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: the mask of supported modes, 0 if absent
 * @param addressSpaces KVM_CAP_MULTI_ADDRESS_SPACE (1 where the capability is absent)
 */
public record KvmCapabilities(int apiVersion, boolean userMemory2, boolean guestMemfd, long guestMemfdFlags,
                              boolean readonlyMem, int nrMemslots, long dirtyLogRingMaxBytes,
                              int manualDirtyLogProtect, boolean syncMmu, boolean memoryFaultInfo,
                              int addressSpaces, int dirtyLogRingCap) {

    static KvmCapabilities read(int apiVersion, VmFd vm) {
        long ring = Integer.toUnsignedLong(vm.checkExtension(KvmCap.DIRTY_LOG_RING));
        long ringAcqRel = Integer.toUnsignedLong(vm.checkExtension(KvmCap.DIRTY_LOG_RING_ACQ_REL));
        int ringCap = ring > 0 ? KvmCap.DIRTY_LOG_RING : ringAcqRel > 0 ? KvmCap.DIRTY_LOG_RING_ACQ_REL : 0;
        return new KvmCapabilities(apiVersion,
                vm.checkExtension(KvmCap.USER_MEMORY2) > 0,
                vm.checkExtension(KvmCap.GUEST_MEMFD) > 0,
                Integer.toUnsignedLong(vm.checkExtension(KvmCap.GUEST_MEMFD_FLAGS)),
                vm.checkExtension(KvmCap.READONLY_MEM) > 0,
                vm.checkExtension(KvmCap.NR_MEMSLOTS),
                ring > 0 ? ring : ringAcqRel,
                vm.checkExtension(KvmCap.MANUAL_DIRTY_LOG_PROTECT2),
                vm.checkExtension(KvmCap.SYNC_MMU) > 0,
                vm.checkExtension(KvmCap.MEMORY_FAULT_INFO) > 0,
                Math.max(1, vm.checkExtension(KvmCap.MULTI_ADDRESS_SPACE)),
                ringCap);
    }

    /** guest_memfd can be created with MMAP and INIT_SHARED, so the host can map and touch it. */
    public boolean guestMemfdMmapShared() {
        long both = KvmIoctls.GUEST_MEMFD_FLAG_MMAP | KvmIoctls.GUEST_MEMFD_FLAG_INIT_SHARED;
        return guestMemfd && (guestMemfdFlags & both) == both;
    }

    public boolean dirtyLogRing() {
        return dirtyLogRingMaxBytes > 0;
    }
}
