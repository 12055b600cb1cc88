package io.guestmem.kvm;

import io.guestmem.KvmException;
import io.guestmem.kvmapi.KvmIoctls;
import io.guestmem.memslot.GuestMemfdFile;
import io.guestmem.memslot.GuestMemfdTable;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.UseAfterClose;

/**
 * A guest_memfd created by {@link KvmVm#createGuestMemfd}: its fd, size and creation flags. The host may map
 * it only when it was created with both MMAP and INIT_SHARED: without INIT_SHARED a host touch raises SIGBUS,
 * which would kill the JVM, so {@link #mmapShared} refuses. Closing is idempotent; the VM closes the
 * guest_memfds it created when it closes. It is registered in its VM's {@link GuestMemfdTable} while open, so
 * the memslot writer of that VM knows it as one of the VM's guest_memfds (and forgets its bindings once it is
 * closed, as KVM does).
 */
public final class KvmGuestMemfd implements AutoCloseable, GuestMemfdFile {
    private final int fd;
    private final long size;
    private final long flags;
    private final GuestMemfdTable table; // the VM's
    private volatile boolean closed;

    KvmGuestMemfd(int fd, long size, long flags, GuestMemfdTable table) {
        this.fd = fd;
        this.size = size;
        this.flags = flags;
        this.table = table;
        table.register(this);
    }

    @Override
    public int fd() {
        checkOpen("fd()");
        return fd;
    }

    /** Created with {@code GUEST_MEMFD_FLAG_MMAP}. */
    @Override
    public boolean hostMappable() {
        return (flags & KvmIoctls.GUEST_MEMFD_FLAG_MMAP) != 0;
    }

    @Override
    public long size() {
        return size;
    }

    public long flags() {
        return flags;
    }

    public boolean mmapShared() {
        long both = KvmIoctls.GUEST_MEMFD_FLAG_MMAP | KvmIoctls.GUEST_MEMFD_FLAG_INIT_SHARED;
        return (flags & both) == both;
    }

    /**
     * Maps the whole file MAP_SHARED read-write and returns the address; the caller unmaps it
     * ({@link Mman#munmap}). Use that address as the slot's userspace_addr too: KVM's instruction emulator
     * reads guest memory through it.
     */
    public long mapShared() {
        checkOpen("mapShared()");
        if (!mmapShared())
            throw new KvmException(Errno.EINVAL, "mmap(guest_memfd " + fd + ")",
                    "created with flags " + Fmt.hex(flags) + ": host access needs GUEST_MEMFD_FLAG_MMAP|INIT_SHARED");
        return Mman.mmap(0, size, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0);
    }

    /** fallocate(PUNCH_HOLE|KEEP_SIZE): frees the pages; the next touch (host or guest) sees zeros. */
    public void punchHole(long offset, long length) {
        checkOpen("punchHole()");
        Memfd.punchHole(fd, offset, length);
    }

    /**
     * fallocate(KEEP_SIZE): allocates the folios of the range that are absent ({@code kvm_gmem_allocate}, the
     * same {@code kvm_gmem_get_folio} a guest fault uses) and leaves present ones alone; maps nothing.
     * guest_memfd accepts only KEEP_SIZE and PUNCH_HOLE ({@code kvm_gmem_fallocate}: EOPNOTSUPP otherwise).
     */
    public void allocate(long offset, long length) {
        checkOpen("allocate()");
        Memfd.fallocate(fd, Memfd.FALLOC_FL_KEEP_SIZE, offset, length);
    }

    private void checkOpen(String call) {
        if (closed) throw UseAfterClose.of("guest_memfd " + fd, call);
    }

    public boolean isClosed() {
        return closed;
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        table.unregister(this, fd); // before the number can be reused by another open
        Posix.close(fd);
    }

    @Override
    public String toString() {
        return "KvmGuestMemfd[fd=" + fd + " size=" + Fmt.size(size) + " flags=" + Fmt.hex(flags) + (closed ? " closed" : "") + "]";
    }
}
