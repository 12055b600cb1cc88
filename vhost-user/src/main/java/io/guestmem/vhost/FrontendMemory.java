package io.guestmem.vhost;

import io.guestmem.access.GuestMemory;
import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.util.ArrayList;
import java.util.List;

/**
 * The guest RAM a front-end hands over: each {@link MemoryRegion} mapped from its fd at its offset as a
 * {@link HostRegion} and added to one {@link GuestMemory} as a memslot (gpa, size, at the mapping), so that
 * every access the back-end makes goes through guestmem's checks (a hole, a range past a region: a typed
 * {@link io.guestmem.access.GuestMemoryException}, never a stray pointer), and QEMU's own virtual addresses
 * (where the vrings are given) translate to guest physical ones through the regions' {@code userAddr}.
 *
 * <p>The region's fd is owned from {@link #add} on: kept open while it is mapped (the region's fd is then a
 * real one for {@link GuestMemory#sharedRegions}) and closed with it, or at once if the region is refused.
 * A file shorter than the region is refused before it is mapped: touching a mapping past the end of its
 * file is a SIGBUS, which would take the JVM down. Single-threaded: the session's loop is its only user.
 */
public final class FrontendMemory implements AutoCloseable {
    /** The slots this back-end offers (GET_MAX_MEM_SLOTS), as qemu-storage-daemon does. */
    public static final int MAX_SLOTS = 32;

    private record Mapped(MemoryRegion region, int slotId, HostRegion host) {}

    private final GuestMemory memory = new GuestMemory(new Memslots(Memslots.Config.defaults().withMaxSlots(MAX_SLOTS)));
    private final List<Mapped> mapped = new ArrayList<>();

    public GuestMemory guestMemory() {
        return memory;
    }

    public List<MemoryRegion> regions() {
        return mapped.stream().map(Mapped::region).toList();
    }

    /** Maps {@code r} from {@code fd} (owned from here on) and adds it as a memslot; refused with the fd closed. */
    public void add(MemoryRegion r, int fd, String request) {
        HostRegion host = null;
        try {
            if (mapped.size() == MAX_SLOTS)
                throw new VhostUserException(Errno.ENOSPC, request, "all " + MAX_SLOTS + " memory slots are in use");
            long end = fileSize(fd, request);
            if (Long.compareUnsigned(end, r.mmapOffset() + r.size()) < 0)
                throw new VhostUserException(Errno.EINVAL, request, r + ": its fd holds only " + Fmt.hex(end) + " bytes");
            host = HostRegion.ofFd(fd, r.mmapOffset(), r.size(), Backing.FD).create();
            int id = freeSlot();
            memory.addRam(id, r.gpa(), host, 0, r.size(), 0); // the writer refuses an overlap as KVM would (EEXIST)
            HostRegion h = host;
            h.onClose(() -> Posix.close(fd));
            mapped.add(new Mapped(r, id, h));
        } catch (RuntimeException e) {
            if (host != null) host.close();
            Posix.close(fd);
            throw e instanceof VhostUserException ? e : new VhostUserException(Errno.EINVAL, request, r + " refused: " + e.getMessage());
        }
    }

    /** Unmaps the region with {@code r}'s gpa, size and user address (its offset is not compared, as QEMU's own lookup). */
    public void remove(MemoryRegion r, String request) {
        for (int i = 0; i < mapped.size(); i++) {
            Mapped m = mapped.get(i);
            if (m.region.sameRange(r)) {
                mapped.remove(i);
                drop(m);
                return;
            }
        }
        throw new VhostUserException(Errno.ENOENT, request, "no " + r + " in the table");
    }

    /** Unmaps every region (SET_MEM_TABLE replaces the whole table). */
    public void clear() {
        while (!mapped.isEmpty()) drop(mapped.removeLast());
    }

    /**
     * The guest physical address of the front-end's virtual address {@code userAddr}, whose {@code len} bytes
     * must lie in one region: EFAULT otherwise.
     */
    public long gpaOf(long userAddr, long len, String what) {
        for (Mapped m : mapped)
            if (m.region.containsUser(userAddr, len)) return m.region.gpa() + (userAddr - m.region.userAddr());
        throw new VhostUserException(Errno.EFAULT, what, Fmt.hex(userAddr) + "+" + Fmt.hex(len)
                + " lies in no region of the memory table " + regions());
    }

    @Override
    public void close() {
        try {
            clear();
        } finally {
            memory.close();
        }
    }

    private void drop(Mapped m) {
        try {
            memory.removeRam(m.slotId);
        } finally {
            m.host.close(); // unmaps, then its close hook closes the fd
        }
    }

    private int freeSlot() {
        for (int id = 0; ; id++) {
            final int k = id;
            if (mapped.stream().noneMatch(m -> m.slotId == k)) return id;
        }
    }

    private static long fileSize(int fd, String request) {
        try {
            return Posix.lseek(fd, 0, Posix.SEEK_END);
        } catch (SyscallException e) {
            throw new VhostUserException(Errno.EINVAL, request, "the region's fd is not a file that can be mapped (" + e.getMessage() + ")");
        }
    }
}
