package io.guestmem.kvmapi;

import io.guestmem.sys.Ioc;

/**
 * The architecture-neutral KVM ioctl numbers, each computed from its {@code _IO/_IOR/_IOW/_IOWR}
 * definition in {@code include/uapi/linux/kvm.h} and the size of its layout in {@link KvmLayouts}; the
 * x86-only ones live in {@link X86Kvm}.
 */
public final class KvmIoctls {
    private KvmIoctls() {}

    /** {@code KVMIO}, the ioctl type byte of every KVM request. */
    public static final int KVMIO = 0xAE;

    // /dev/kvm
    public static final long KVM_GET_API_VERSION = Ioc.io(KVMIO, 0x00);
    public static final long KVM_CREATE_VM = Ioc.io(KVMIO, 0x01);
    public static final long KVM_CHECK_EXTENSION = Ioc.io(KVMIO, 0x03);
    public static final long KVM_GET_VCPU_MMAP_SIZE = Ioc.io(KVMIO, 0x04);

    // VM fd
    public static final long KVM_CREATE_VCPU = Ioc.io(KVMIO, 0x41);
    public static final long KVM_GET_DIRTY_LOG = Ioc.iow(KVMIO, 0x42, KvmLayouts.DIRTY_LOG.byteSize());
    public static final long KVM_SET_USER_MEMORY_REGION =
            Ioc.iow(KVMIO, 0x46, KvmLayouts.USERSPACE_MEMORY_REGION.byteSize());
    public static final long KVM_SET_USER_MEMORY_REGION2 =
            Ioc.iow(KVMIO, 0x49, KvmLayouts.USERSPACE_MEMORY_REGION2.byteSize());
    public static final long KVM_ENABLE_CAP = Ioc.iow(KVMIO, 0xa3, KvmLayouts.ENABLE_CAP.byteSize());
    public static final long KVM_CLEAR_DIRTY_LOG = Ioc.iowr(KVMIO, 0xc0, KvmLayouts.CLEAR_DIRTY_LOG.byteSize());
    public static final long KVM_RESET_DIRTY_RINGS = Ioc.io(KVMIO, 0xc7);
    public static final long KVM_CREATE_GUEST_MEMFD = Ioc.iowr(KVMIO, 0xd4, KvmLayouts.CREATE_GUEST_MEMFD.byteSize());

    // vCPU fd
    public static final long KVM_RUN = Ioc.io(KVMIO, 0x80);

    /** {@code KVM_MEM_*} memslot flags. */
    public static final int KVM_MEM_LOG_DIRTY_PAGES = 1, KVM_MEM_READONLY = 2, KVM_MEM_GUEST_MEMFD = 4;

    /** {@code GUEST_MEMFD_FLAG_*} for KVM_CREATE_GUEST_MEMFD. */
    public static final long GUEST_MEMFD_FLAG_MMAP = 1, GUEST_MEMFD_FLAG_INIT_SHARED = 2;

    /** {@code KVM_DIRTY_LOG_PAGE_OFFSET}: the dirty ring's page offset in a vCPU fd's mmap space. */
    public static final long KVM_DIRTY_LOG_PAGE_OFFSET = 64;

    /** {@code KVM_DIRTY_GFN_F_DIRTY} / {@code KVM_DIRTY_GFN_F_RESET}. */
    public static final int KVM_DIRTY_GFN_F_DIRTY = 1, KVM_DIRTY_GFN_F_RESET = 2;

    /** The API version every KVM since 2.6.22 reports. */
    public static final int KVM_API_VERSION = 12;
}
