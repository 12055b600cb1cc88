package io.guestmem.vhost.queue;

import io.guestmem.access.GuestMemory;
import io.guestmem.access.GuestMemoryException;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.virtio.VirtqDescriptor;
import java.lang.invoke.VarHandle;

/**
 * The device side of a split virtqueue over {@link GuestMemory}: takes the heads the driver made available,
 * walks their descriptor chains (NEXT and INDIRECT), returns them through the used ring, and decides whether
 * the driver wants an interrupt (EVENT_IDX's {@code used_event}, else the available ring's NO_INTERRUPT flag).
 *
 * <p>Ordering is virtio's: the available index is read with acquire ordering before any entry it publishes,
 * the used index is written with release ordering after the entries it publishes, and a full fence separates
 * that write from the read of the driver's suppression state (and the write of {@code avail_event} from the
 * re-check of the available index), so that neither side misses the other's last update.
 *
 * <p>Every access is guestmem's, at guest physical addresses: a ring or buffer outside the regions is a
 * {@link GuestMemoryException} there, never an access outside them. A malformed chain is a value
 * ({@link DescriptorChain#error()}); a ring broken beyond one request is a {@link VirtqueueException}.
 * Not thread-safe: one thread serves a queue.
 */
public final class SplitQueue {
    /** The driver asks for no interrupt (without EVENT_IDX). */
    public static final int AVAIL_F_NO_INTERRUPT = 1;

    private final GuestMemory mem;
    private final RingLayout ring;
    private final boolean eventIdx, indirect;
    private final int mask;
    private final DescriptorChain chain;
    private int lastAvail, usedIdx, signalledUsed;
    private String broken;

    /**
     * A queue whose next available entry is {@code lastAvail} (vhost's vring base) and whose used index is the
     * one in guest memory now. The three rings must be aligned and each lie in guest RAM.
     */
    public SplitQueue(GuestMemory mem, RingLayout ring, boolean eventIdx, boolean indirect, int lastAvail) {
        this.mem = mem;
        this.ring = ring;
        this.eventIdx = eventIdx;
        this.indirect = indirect;
        this.mask = ring.size() - 1;
        if (ring.desc() % 16 != 0 || ring.avail() % 2 != 0 || ring.used() % 4 != 0)
            throw new VirtqueueException(Errno.EINVAL, "virtqueue", ring + " is misaligned (16, 2 and 4 bytes)");
        try {
            mem.slice(ring.desc(), ring.descBytes());
            mem.slice(ring.avail(), ring.availBytes());
            mem.slice(ring.used(), ring.usedBytes());
        } catch (GuestMemoryException e) {
            throw new VirtqueueException(Errno.EFAULT, "virtqueue", ring + " is not in guest RAM: " + e.getMessage());
        }
        this.lastAvail = lastAvail & 0xffff;
        this.usedIdx = mem.readU16Volatile(ring.used() + 2);
        this.signalledUsed = usedIdx;
        // up to size - 1 direct descriptors, then an indirect table of up to size entries (virtio 1.x 2.7.5.3:
        // the device handles "zero or more normal chained descriptors followed by a single" indirect one)
        this.chain = new DescriptorChain(2 * ring.size());
    }

    public RingLayout layout() {
        return ring;
    }

    /** The next available entry to take (vhost's vring base, what GET_VRING_BASE returns). */
    public int lastAvailIdx() {
        return lastAvail;
    }

    public int usedIdx() {
        return usedIdx;
    }

    /** Why the queue stopped (the message of the {@link VirtqueueException} {@link #pop} threw), null while it works. */
    public String broken() {
        return broken;
    }

    /**
     * The head of the next available chain, walked; null when the driver has made none available. A ring
     * broken beyond one request is a {@link VirtqueueException}, and the queue stays broken: every later pop
     * throws it again (the device needs a reset, virtio's DEVICE_NEEDS_RESET).
     */
    public DescriptorChain pop() {
        if (broken != null) throw new VirtqueueException(Errno.EIO, "virtqueue", "broken: " + broken);
        int avail = mem.readU16Acquire(ring.avail() + 2);
        int pending = (avail - lastAvail) & 0xffff;
        if (pending == 0) return null;
        if (pending > ring.size())
            throw broke("index " + avail + " is " + pending + " entries past " + lastAvail + " in a ring of " + ring.size());
        int head = mem.readU16(ring.avail() + 4 + 2L * (lastAvail & mask));
        if (head >= ring.size()) throw broke("head " + head + " at entry " + lastAvail + " is past a table of " + ring.size());
        lastAvail = (lastAvail + 1) & 0xffff;
        walk(head);
        return chain;
    }

    /** Returns chain {@code head} to the driver with {@code written} bytes written into its buffers. */
    public void push(int head, int written) {
        long e = ring.used() + 4 + 8L * (usedIdx & mask);
        mem.writeU32(e, head);
        mem.writeU32(e + 4, written);
        usedIdx = (usedIdx + 1) & 0xffff;
        mem.writeU16Release(ring.used() + 2, usedIdx);
    }

    /**
     * After a batch: tells the driver (EVENT_IDX) which entry to kick for next, and whether it made more
     * available meanwhile, to be served before waiting for a kick again.
     */
    public boolean rearm() {
        if (eventIdx) mem.writeU16Volatile(ring.used() + 4 + 8L * ring.size(), lastAvail);
        VarHandle.fullFence();
        return ((mem.readU16Acquire(ring.avail() + 2) - lastAvail) & 0xffff) != 0;
    }

    /** Whether the driver wants an interrupt for what was pushed since the last call (and forgets it). */
    public boolean needsInterrupt() {
        if (usedIdx == signalledUsed) return false;
        VarHandle.fullFence();
        int old = signalledUsed;
        signalledUsed = usedIdx;
        if (!eventIdx) return (mem.readU16Volatile(ring.avail()) & AVAIL_F_NO_INTERRUPT) == 0;
        int usedEvent = mem.readU16Volatile(ring.avail() + 4 + 2L * ring.size());
        // vring_need_event: the driver's event index lies in (old, new]
        return ((usedIdx - usedEvent - 1) & 0xffff) < ((usedIdx - old) & 0xffff);
    }

    private VirtqueueException broke(String why) {
        VirtqueueException e = new VirtqueueException(Errno.EINVAL, "virtqueue avail", why);
        broken = e.getMessage();
        return e;
    }

    private void walk(int head) {
        DescriptorChain c = chain;
        c.reset(head);
        long table = ring.desc();
        int tableSize = ring.size(), idx = head, budget = ring.size();
        boolean inIndirect = false;
        while (true) {
            if (idx >= tableSize) {
                c.fail(ChainError.NEXT_OUT_OF_RANGE);
                return;
            }
            if (budget-- == 0) {
                c.fail(ChainError.TOO_LONG);
                return;
            }
            long at = table + VirtqDescriptor.SIZE * idx, addr, len;
            int flags, next;
            try { // field by field: a record and a struct copy per descriptor would be garbage on the hot path
                addr = mem.readU64(at);
                len = Integer.toUnsignedLong(mem.readU32(at + 8));
                flags = mem.readU16(at + 12);
                next = mem.readU16(at + 14);
            } catch (GuestMemoryException e) {
                c.fail(ChainError.DESCRIPTOR_OUTSIDE_MEMORY);
                return;
            }
            if ((flags & VirtqDescriptor.F_INDIRECT) != 0) {
                if (!indirect || inIndirect) {
                    c.fail(ChainError.INDIRECT_NOT_ALLOWED);
                    return;
                }
                if ((flags & VirtqDescriptor.F_NEXT) != 0) {
                    c.fail(ChainError.INDIRECT_WITH_NEXT);
                    return;
                }
                if (len == 0 || len % VirtqDescriptor.SIZE != 0 || len / VirtqDescriptor.SIZE > ring.size()) {
                    c.fail(ChainError.INDIRECT_BAD_LENGTH);
                    return;
                }
                if (Long.compareUnsigned(addr + len, addr) < 0) {
                    c.fail(ChainError.LENGTH_OVERFLOW);
                    return;
                }
                table = addr;
                tableSize = (int) (len / VirtqDescriptor.SIZE);
                budget = tableSize;
                idx = 0;
                inIndirect = true;
                continue;
            }
            if (!c.add(addr, len, (flags & VirtqDescriptor.F_WRITE) != 0)) return;
            if ((flags & VirtqDescriptor.F_NEXT) == 0) return;
            idx = next;
        }
    }

    @Override
    public String toString() {
        return "split virtqueue (" + ring + ", last avail " + lastAvail + ", used " + usedIdx + (eventIdx ? ", EVENT_IDX" : "")
                + ") at " + Fmt.hex(ring.desc());
    }
}
