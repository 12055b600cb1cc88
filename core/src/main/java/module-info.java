/**
 * guestmem's KVM memory logic over real host memory: memslots, the MMU-notifier protocol, follow_pfn, mapping
 * levels, memslot locking, private (guest_memfd) memory, real KVM VMs and guest memory access for device
 * models. No FFM of its own: every native call goes through {@code io.guestmem.bridge}, required
 * transitively because this module's API returns and accepts its types ({@code HostRegion},
 * {@code SyscallException}, ...). A VMM writes {@code requires io.guestmem.core;} and runs with
 * {@code --enable-native-access=io.guestmem.bridge}.
 */
module io.guestmem.core {
    requires transitive io.guestmem.bridge;

    exports io.guestmem;
    exports io.guestmem.access;
    exports io.guestmem.gmem;
    exports io.guestmem.kvm;
    exports io.guestmem.kvm.arm64;
    exports io.guestmem.kvm.x86;
    exports io.guestmem.lock;
    exports io.guestmem.memslot;
    exports io.guestmem.migration;
    exports io.guestmem.mmu;
    exports io.guestmem.snapshot;
    exports io.guestmem.virtio;
    exports io.guestmem.vm;
}
