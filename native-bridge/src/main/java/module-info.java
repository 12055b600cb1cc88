/**
 * The only module of guestmem that touches FFM: syscalls, host regions, the kernel's view of memory and the
 * {@code /dev/kvm} ioctls. Native access is granted to this module by name:
 * {@code java --enable-native-access=io.guestmem.bridge ...}.
 *
 * <p>Every package but one is exported to all modules, because {@code io.guestmem.core}'s public API hands
 * their types to a VMM in its signatures: {@code host} ({@code HostRegion} in {@code GuestMemory.addRam},
 * {@code Backing}), {@code sys} ({@code SyscallException}, {@code Errno}, {@code ErrnoException} as
 * {@code KvmException}'s base), {@code procfs} ({@code MemoryClass} carries a {@code PagemapEntry} and
 * {@code KPageFlag}s, {@code HostView.vma} returns a {@code Vma}) and {@code kvmapi} (the raw fds behind
 * {@code KvmVm.vmFd()} and {@code Vcpu.vcpuFd()}, {@code X86Regs}). Core requires this module transitively, so
 * a VMM that requires {@code io.guestmem.core} reads them too. {@code probe} (raw calls that only tests and
 * probes make) is exported to core alone, whose tests use it, and is no API. {@code ffm} (the linker, the
 * downcall handles and errno capture every binding class uses) is not exported at all: no other module
 * makes a native call.
 */
module io.guestmem.bridge {
    requires org.apache.commons.lang3;

    exports io.guestmem.host;
    exports io.guestmem.sys;
    exports io.guestmem.procfs;
    exports io.guestmem.kvmapi;
    exports io.guestmem.probe to io.guestmem.core;
}
