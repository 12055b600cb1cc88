package io.guestmem.kvmapi;

import static io.guestmem.kvmapi.KvmLayouts.offset;

import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A VM fd: memory regions (v1 and v2), guest_memfd creation, vCPU creation, the dirty log and
 * capabilities. Each failed ioctl throws a {@link SyscallException} naming the request and its main
 * arguments, e.g. {@code EEXIST from ioctl(vm fd 7, KVM_SET_USER_MEMORY_REGION2, slot=1 flags=0x0 gpa=0x0 size=2 MiB ...)}.
 */
public final class VmFd extends KvmFd {
    private static final long R2_SLOT = offset(KvmLayouts.USERSPACE_MEMORY_REGION2, "slot");
    private static final long R2_FLAGS = offset(KvmLayouts.USERSPACE_MEMORY_REGION2, "flags");
    private static final long R2_GPA = offset(KvmLayouts.USERSPACE_MEMORY_REGION2, "guest_phys_addr");
    private static final long R2_SIZE = offset(KvmLayouts.USERSPACE_MEMORY_REGION2, "memory_size");
    private static final long R2_UADDR = offset(KvmLayouts.USERSPACE_MEMORY_REGION2, "userspace_addr");
    private static final long R2_GMEM_OFFSET = offset(KvmLayouts.USERSPACE_MEMORY_REGION2, "guest_memfd_offset");
    private static final long R2_GMEM_FD = offset(KvmLayouts.USERSPACE_MEMORY_REGION2, "guest_memfd");

    private final int vcpuMmapSize;

    VmFd(int fd, int vcpuMmapSize) {
        super(fd, "vm");
        this.vcpuMmapSize = vcpuMmapSize;
    }

    /** KVM_CHECK_EXTENSION on the VM (some answers, e.g. GUEST_MEMFD_FLAGS, depend on the VM type). */
    public int checkExtension(int cap) {
        return ioctl(KvmIoctls.KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION, " + KvmCap.nameOf(cap));
    }

    /** KVM_SET_USER_MEMORY_REGION (v1); {@code size == 0} deletes the slot. */
    public void setUserMemoryRegion(int slot, int flags, long gpa, long size, long userspaceAddr) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment r = a.allocate(KvmLayouts.USERSPACE_MEMORY_REGION);
            r.set(ValueLayout.JAVA_INT, R2_SLOT, slot);
            r.set(ValueLayout.JAVA_INT, R2_FLAGS, flags);
            r.set(ValueLayout.JAVA_LONG, R2_GPA, gpa);
            r.set(ValueLayout.JAVA_LONG, R2_SIZE, size);
            r.set(ValueLayout.JAVA_LONG, R2_UADDR, userspaceAddr);
            ioctl(KvmIoctls.KVM_SET_USER_MEMORY_REGION, r, "KVM_SET_USER_MEMORY_REGION, "
                    + regionArgs(slot, flags, gpa, size, userspaceAddr));
        }
    }

    /**
     * KVM_SET_USER_MEMORY_REGION2; {@code size == 0} deletes the slot. {@code guestMemfd}/{@code guestMemfdOffset}
     * matter only with {@link KvmIoctls#KVM_MEM_GUEST_MEMFD} in {@code flags}.
     */
    public void setUserMemoryRegion2(int slot, int flags, long gpa, long size, long userspaceAddr,
                                     long guestMemfdOffset, int guestMemfd) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment r = a.allocate(KvmLayouts.USERSPACE_MEMORY_REGION2); // zeroed: pads must be 0
            r.set(ValueLayout.JAVA_INT, R2_SLOT, slot);
            r.set(ValueLayout.JAVA_INT, R2_FLAGS, flags);
            r.set(ValueLayout.JAVA_LONG, R2_GPA, gpa);
            r.set(ValueLayout.JAVA_LONG, R2_SIZE, size);
            r.set(ValueLayout.JAVA_LONG, R2_UADDR, userspaceAddr);
            r.set(ValueLayout.JAVA_LONG, R2_GMEM_OFFSET, guestMemfdOffset);
            r.set(ValueLayout.JAVA_INT, R2_GMEM_FD, guestMemfd);
            String args = regionArgs(slot, flags, gpa, size, userspaceAddr)
                    + ((flags & KvmIoctls.KVM_MEM_GUEST_MEMFD) != 0
                    ? " guest_memfd=" + guestMemfd + "@" + Fmt.hex(guestMemfdOffset) : "");
            ioctl(KvmIoctls.KVM_SET_USER_MEMORY_REGION2, r, "KVM_SET_USER_MEMORY_REGION2, " + args);
        }
    }

    private static String regionArgs(int slot, int flags, long gpa, long size, long uaddr) {
        String s = (slot >>> 16) != 0 ? "as=" + (slot >>> 16) + " slot=" + (slot & 0xffff) : "slot=" + slot;
        return s + " flags=" + Fmt.hex(flags) + " gpa=" + Fmt.hex(gpa) + " size=" + Fmt.size(size)
                + " uaddr=" + Fmt.hex(uaddr);
    }

    /**
     * KVM_CREATE_GUEST_MEMFD: a new guest_memfd of {@code size} bytes bound to this VM; returns its fd, which
     * the caller owns (close it with {@link Posix#close}).
     */
    public int createGuestMemfd(long size, long flags) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment g = a.allocate(KvmLayouts.CREATE_GUEST_MEMFD);
            g.set(ValueLayout.JAVA_LONG, offset(KvmLayouts.CREATE_GUEST_MEMFD, "size"), size);
            g.set(ValueLayout.JAVA_LONG, offset(KvmLayouts.CREATE_GUEST_MEMFD, "flags"), flags);
            return ioctl(KvmIoctls.KVM_CREATE_GUEST_MEMFD, g,
                    "KVM_CREATE_GUEST_MEMFD, size=" + Fmt.size(size) + " flags=" + Fmt.hex(flags));
        }
    }

    /** KVM_CREATE_VCPU, then mmap of its kvm_run area. */
    public VcpuFd createVcpu(int id) {
        int vcpuFd = ioctl(KvmIoctls.KVM_CREATE_VCPU, id, "KVM_CREATE_VCPU, id=" + id);
        try {
            return new VcpuFd(vcpuFd, id, vcpuMmapSize);
        } catch (RuntimeException e) {
            Posix.close(vcpuFd);
            throw e;
        }
    }

    /**
     * KVM_GET_DIRTY_LOG for a slot of {@code npages} pages: the bitmap as little-endian 64-bit words (bit
     * {@code i % 64} of word {@code i / 64} is page {@code i} of the slot). Without manual protection, KVM
     * clears its log and re-protects the pages in the same call.
     */
    public long[] getDirtyLog(int slot, long npages) {
        long words = (npages + 63) / 64;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment bitmap = a.allocate(Math.max(8, words * 8), 8);
            MemorySegment d = a.allocate(KvmLayouts.DIRTY_LOG);
            d.set(ValueLayout.JAVA_INT, offset(KvmLayouts.DIRTY_LOG, "slot"), slot);
            d.set(ValueLayout.ADDRESS, offset(KvmLayouts.DIRTY_LOG, "dirty_bitmap"), bitmap);
            ioctl(KvmIoctls.KVM_GET_DIRTY_LOG, d, "KVM_GET_DIRTY_LOG, slot=" + slot + " npages=" + npages);
            return bitmap.asSlice(0, words * 8).toArray(ValueLayout.JAVA_LONG);
        }
    }

    /**
     * KVM_CLEAR_DIRTY_LOG (with MANUAL_DIRTY_LOG_PROTECT2 enabled): clears and re-protects the pages whose
     * bits are set in {@code bitmap}, relative to {@code firstPage} (a multiple of 64).
     */
    public void clearDirtyLog(int slot, long firstPage, int numPages, long[] bitmap) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment bits = a.allocate(Math.max(8L, bitmap.length * 8L), 8);
            MemorySegment.copy(bitmap, 0, bits, ValueLayout.JAVA_LONG, 0, bitmap.length);
            MemorySegment c = a.allocate(KvmLayouts.CLEAR_DIRTY_LOG);
            c.set(ValueLayout.JAVA_INT, offset(KvmLayouts.CLEAR_DIRTY_LOG, "slot"), slot);
            c.set(ValueLayout.JAVA_INT, offset(KvmLayouts.CLEAR_DIRTY_LOG, "num_pages"), numPages);
            c.set(ValueLayout.JAVA_LONG, offset(KvmLayouts.CLEAR_DIRTY_LOG, "first_page"), firstPage);
            c.set(ValueLayout.ADDRESS, offset(KvmLayouts.CLEAR_DIRTY_LOG, "dirty_bitmap"), bits);
            ioctl(KvmIoctls.KVM_CLEAR_DIRTY_LOG, c, "KVM_CLEAR_DIRTY_LOG, slot=" + slot + " first_page=" + firstPage
                    + " num_pages=" + numPages);
        }
    }

    /** KVM_ENABLE_CAP on the VM with up to four arguments. */
    public void enableCap(int cap, long... args) {
        if (args.length > 4) throw new IllegalArgumentException("kvm_enable_cap takes at most 4 args");
        try (Arena a = Arena.ofConfined()) {
            MemorySegment e = a.allocate(KvmLayouts.ENABLE_CAP);
            e.set(ValueLayout.JAVA_INT, offset(KvmLayouts.ENABLE_CAP, "cap"), cap);
            long argsOff = offset(KvmLayouts.ENABLE_CAP, "args");
            for (int i = 0; i < args.length; i++) e.set(ValueLayout.JAVA_LONG, argsOff + 8L * i, args[i]);
            StringBuilder s = new StringBuilder("KVM_ENABLE_CAP, " + KvmCap.nameOf(cap));
            for (long arg : args) s.append(' ').append(Fmt.hex(arg));
            ioctl(KvmIoctls.KVM_ENABLE_CAP, e, s.toString());
        }
    }

    /** KVM_RESET_DIRTY_RINGS: re-protects the ring entries userspace marked RESET; returns how many. */
    public int resetDirtyRings() {
        return ioctl(KvmIoctls.KVM_RESET_DIRTY_RINGS, 0L, "KVM_RESET_DIRTY_RINGS");
    }

    /** The size a vCPU fd's mmap must have (KVM_GET_VCPU_MMAP_SIZE, read when the VM was created). */
    public int vcpuMmapSize() {
        return vcpuMmapSize;
    }

    /** For arch-specific ioctl classes ({@link X86Kvm}): an integer-argument VM ioctl. */
    int ioctlInt(long request, long arg, String call) {
        return ioctl(request, arg, call);
    }

    /** For arch-specific ioctl classes ({@link Arm64Kvm}): a pointer-argument VM ioctl. */
    int ioctlPtr(long request, MemorySegment arg, String call) {
        return ioctl(request, arg, call);
    }
}
