package io.guestmem.kvmapi;

import io.guestmem.sys.Posix;

/** {@code /dev/kvm}: the system ioctls (API version, capabilities, vCPU mmap size) and VM creation. */
public final class KvmDevice extends KvmFd {
    public static final String PATH = "/dev/kvm";

    private KvmDevice(int fd, String path) {
        super(fd, path);
    }

    /** Opens /dev/kvm read-write; throws SyscallException (ENOENT, EACCES ...) naming the open. */
    public static KvmDevice open() {
        return open(PATH);
    }

    public static KvmDevice open(String path) {
        return new KvmDevice(Posix.open(path, Posix.O_RDWR), path);
    }

    /** KVM_GET_API_VERSION: 12 on every kernel this library supports. */
    public int apiVersion() {
        return ioctl(KvmIoctls.KVM_GET_API_VERSION, 0L, "KVM_GET_API_VERSION");
    }

    /** KVM_CHECK_EXTENSION on /dev/kvm: 0 when absent, else the capability's value (often 1, sometimes a size or mask). */
    public int checkExtension(int cap) {
        return ioctl(KvmIoctls.KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION, " + KvmCap.nameOf(cap));
    }

    /** KVM_GET_VCPU_MMAP_SIZE: how many bytes of a vCPU fd to mmap (kvm_run plus arch pages). */
    public int vcpuMmapSize() {
        return ioctl(KvmIoctls.KVM_GET_VCPU_MMAP_SIZE, 0L, "KVM_GET_VCPU_MMAP_SIZE");
    }

    /** KVM_CREATE_VM with the given machine type (0 = default). */
    public VmFd createVm(long type) {
        int vmFd = ioctl(KvmIoctls.KVM_CREATE_VM, type, "KVM_CREATE_VM, type=" + type);
        return new VmFd(vmFd, vcpuMmapSize());
    }
}
