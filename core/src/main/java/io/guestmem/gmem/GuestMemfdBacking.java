package io.guestmem.gmem;

/** What really backs a {@link GuestMemfdRegion}; every result that depends on it reports it. */
public enum GuestMemfdBacking {
    /** A real KVM guest_memfd created with MMAP|INIT_SHARED: mapped MAP_SHARED, host access possible. */
    GUEST_MEMFD,
    /**
     * A real KVM guest_memfd without MMAP|INIT_SHARED (the kernel does not offer both): only the guest uses it.
     * The library never maps or touches it from Java: without INIT_SHARED a host touch raises SIGBUS.
     */
    GUEST_MEMFD_GUEST_ONLY,
    /**
     * No KVM guest_memfd is available (no /dev/kvm, no VM, or no KVM_CAP_GUEST_MEMFD): an ordinary memfd stands
     * in, with the same library-level state machine. The kernel does not enforce anything about it.
     */
    MEMFD_STAND_IN;

    /** True for a real KVM guest_memfd. */
    public boolean isRealGuestMemfd() {
        return this != MEMFD_STAND_IN;
    }
}
