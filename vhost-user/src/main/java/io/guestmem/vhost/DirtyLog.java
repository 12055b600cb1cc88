package io.guestmem.vhost;

import io.guestmem.access.DirtyPages;
import io.guestmem.access.GuestMemory;
import io.guestmem.access.RamSlot;
import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.function.LongConsumer;

/**
 * The front-end's migration log (SET_LOG_BASE with LOG_SHMFD): a shared bitmap, one bit per 4 KiB page of
 * guest physical memory, in which the back-end marks every page it writes while VHOST_F_LOG_ALL is set, so
 * that QEMU sends those pages again.
 *
 * <p>The marks come from guestmem's own dirty tracking, not from a second bookkeeping in the device: every
 * write the back-end makes into guest memory goes through {@link GuestMemory} (the preadv of a read request,
 * the status byte, the used ring), which marks the slot's dirty bitmap; {@link #sync} collects those bitmaps
 * and ORs them into the log, atomically per 64-bit word since QEMU clears words of it concurrently. The
 * session syncs after each batch of requests and before it answers GET_VRING_BASE, so the log holds every page
 * written before the used index that made it visible was published to the front-end's stop.
 */
public final class DirtyLog implements AutoCloseable {
    /** VHOST_LOG_PAGE */
    public static final long LOG_PAGE = 4096;
    private static final VarHandle WORD = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();

    private final GuestMemory memory;
    private HostRegion log;
    private boolean logging;
    private long pagesLogged, syncs;
    private volatile LongConsumer watcher;

    DirtyLog(GuestMemory memory) {
        this.memory = memory;
    }

    /** Maps the log from {@code fd} (owned from here on: closed with the mapping, or now if refused). */
    void setBase(int fd, long size, long offset) {
        HostRegion next = null;
        try {
            if (size <= 0 || size % 8 != 0 || offset < 0 || offset % Posix.PAGE_SIZE != 0)
                throw new VhostUserException(Errno.EINVAL, "SET_LOG_BASE", "a log of " + Fmt.hex(size) + " bytes at " + Fmt.hex(offset));
            long mapped = (size + Posix.PAGE_SIZE - 1) / Posix.PAGE_SIZE * Posix.PAGE_SIZE;
            long file = Posix.lseek(fd, 0, Posix.SEEK_END);
            if (Long.compareUnsigned(file, offset + mapped) < 0) // a mapping past the file's end is a SIGBUS
                throw new VhostUserException(Errno.EINVAL, "SET_LOG_BASE", "the log's fd holds " + Fmt.hex(file) + " bytes");
            next = HostRegion.ofFd(fd, offset, mapped, Backing.FD).guardPages(0).create();
            next.onClose(() -> Posix.close(fd));
        } catch (RuntimeException e) {
            if (next == null) Posix.close(fd);
            throw e instanceof VhostUserException ? e : new VhostUserException(Errno.EINVAL, "SET_LOG_BASE", e.getMessage());
        }
        if (log != null) {
            sync(); // what is pending goes to the old log: the front-end switches after it has read it
            log.close();
        }
        log = next;
        logSize = size;
    }

    private long logSize;

    /** VHOST_F_LOG_ALL set or cleared. Turning it on forgets the writes before: they are not the migration's. */
    void setLogging(boolean on) {
        if (on) for (RamSlot s : memory.ramSlots()) memory.collectDirty(s.slot().id());
        logging = on;
    }

    public boolean logging() {
        return logging && log != null;
    }

    /** Pages marked in the log so far (4 KiB pages, counted as many times as they were synced). */
    public long pagesLogged() {
        return pagesLogged;
    }

    public long syncs() {
        return syncs;
    }

    /**
     * Has {@code w} told each log page (gpa / 4096) as it is marked, in the session's thread (null: no one).
     * For tracing what a migration's log carried: QEMU clears the bits it has read, so the log itself cannot
     * say afterwards what was in it.
     */
    public void watch(LongConsumer w) {
        watcher = w;
    }

    /** ORs the pages written since the last sync into the log. */
    void sync() {
        if (!logging()) return;
        MemorySegment bits = log.segment();
        long words = logSize / 8, perPage = Math.max(1, memory.memslots().geometry().pageSize() / LOG_PAGE);
        int shift = memory.memslots().geometry().shift();
        LongConsumer watched = watcher;
        for (RamSlot s : memory.ramSlots()) {
            DirtyPages d = memory.collectDirty(s.slot().id());
            for (long gfn : d.gfns()) {
                long first = (gfn << shift) / LOG_PAGE;
                for (long p = first; p < first + perPage; p++) {
                    long w = p >>> 6;
                    if (w >= words) break; // past the log's end: QEMU sized it for all of RAM, so never
                    WORD.getAndBitwiseOr(bits, w * 8, 1L << (p & 63));
                    pagesLogged++;
                    if (watched != null) watched.accept(p);
                }
            }
        }
        syncs++;
    }

    /** Whether the log has page {@code gpa / 4096} marked (for tests and the report). */
    public boolean marked(long gpa) {
        if (log == null) return false;
        long p = gpa / LOG_PAGE, w = p >>> 6;
        if (w >= logSize / 8) return false;
        return ((long) WORD.getVolatile(log.segment(), w * 8) & (1L << (p & 63))) != 0;
    }

    @Override
    public void close() {
        if (log != null) log.close();
        log = null;
    }
}
