package io.guestmem.memslot;

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
