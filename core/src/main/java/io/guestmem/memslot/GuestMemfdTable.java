package io.guestmem.memslot;

import io.guestmem.sys.Errno;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The guest_memfds of one VM, by descriptor: what the memslot writer needs to answer as {@code kvm_gmem_bind}
 * does without asking KVM. A descriptor that is not in the table is no guest_memfd of this VM (EINVAL), or
 * no open descriptor at all (EBADF, the kernel's {@code fget} failing; {@link #isOpen} asks
 * {@code /proc/self/fd}). The VM registers every guest_memfd it creates and removes it when it is closed, as
 * KVM drops a file's bindings when its last reference goes ({@code kvm_gmem_release}).
 */
public final class GuestMemfdTable {
    private final Map<Integer, GuestMemfdFile> byFd = new ConcurrentHashMap<>();
    private final Errno overlapErrno;
    private final boolean mappableOnly;

    /** The rules of KVM through 6.18 on x86: overlapping bindings are EINVAL, any guest_memfd may back a slot. */
    public GuestMemfdTable() {
        this(Errno.EINVAL, false);
    }

    /**
     * @param overlapErrno what {@code kvm_gmem_bind} answers a binding that overlaps another of the same file:
     *                     EINVAL through 6.18 (its overlap check jumps to the EINVAL exit), EEXIST on Debian's 7.3
     *                     (measured by the VM, {@code io.guestmem.kvm.KvmVm})
     * @param mappableOnly arm64's rule since "KVM: arm64: Enable support for guest_memfd backed memory"
     *                     (https://lore.kernel.org/all/20250723104714.1674617-20-tabba@google.com/): a guest_memfd slot
     *                     must be gmem-only, i.e. its file host-mappable ({@link GuestMemfdFile#hostMappable}), else
     *                     {@code kvm_arch_prepare_memory_region} refuses it with EINVAL, after the bind and the
     *                     guest-physical limit
     */
    public GuestMemfdTable(Errno overlapErrno, boolean mappableOnly) {
        this.overlapErrno = java.util.Objects.requireNonNull(overlapErrno);
        this.mappableOnly = mappableOnly;
    }

    /** What an overlapping binding costs on this VM's KVM. */
    public Errno overlapErrno() {
        return overlapErrno;
    }

    /** Whether every guest_memfd slot must be backed by a host-mappable file (arm64). */
    public boolean mappableOnly() {
        return mappableOnly;
    }

    /** Adds a guest_memfd of this VM. */
    public void register(GuestMemfdFile f) {
        GuestMemfdFile prev = byFd.putIfAbsent(f.fd(), f);
        if (prev != null && prev != f) throw new IllegalStateException("fd " + f.fd() + " is already " + prev);
    }

    /** Removes it (it was closed). */
    public void unregister(GuestMemfdFile f, int fd) {
        byFd.computeIfPresent(fd, (k, v) -> v == f ? null : v);
    }

    /** The guest_memfd of this VM open as {@code fd}, or null. */
    public GuestMemfdFile byFd(int fd) {
        return byFd.get(fd);
    }

    /** Whether {@code f}, registered as {@code fd}, still is (the same object: a file is its identity). */
    public boolean contains(GuestMemfdFile f, int fd) {
        return byFd.get(fd) == f;
    }

    /** Whether {@code fd} is an open descriptor of this process (the kernel's fd table, via /proc/self/fd). */
    public static boolean isOpen(int fd) {
        return fd >= 0 && Files.exists(Path.of("/proc/self/fd/" + fd), LinkOption.NOFOLLOW_LINKS);
    }

    @Override
    public String toString() {
        return "GuestMemfdTable" + byFd.keySet();
    }
}
