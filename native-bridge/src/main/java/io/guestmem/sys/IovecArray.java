package io.guestmem.sys;

import io.guestmem.ffm.Native;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A native {@code struct iovec[count]} ({@link Uio#IOVEC}), what {@link Uio}'s readv/writev/preadv/pwritev
 * take. It owns its memory: {@link #close()} frees it, and any use afterwards throws IllegalStateException
 * naming the call. Confined to the thread that allocated it (a vector is built and submitted by one thread).
 *
 * <p>An entry holds a raw address: the kernel is bound neither by the lifetime of the segment it was taken
 * from nor by that segment being read-only. {@link #set(int, MemorySegment)} refuses a segment that is
 * already dead; keeping it alive (and its memory mapped) until the call returns is the caller's part.
 */
public final class IovecArray implements AutoCloseable {
    private static final long SIZE = Uio.IOVEC.byteSize();

    private final Arena arena;
    private final MemorySegment memory;
    private final int count;

    private IovecArray(int count) {
        this.count = count;
        this.arena = Arena.ofConfined();
        // at least one entry so that the array always has an address to pass, also for an empty vector
        this.memory = arena.allocate(Uio.IOVEC, Math.max(count, 1));
    }

    /** A zeroed array of {@code count} entries; the caller closes it. */
    public static IovecArray allocate(int count) {
        if (count < 0) throw new IllegalArgumentException("iovec count " + count);
        return new IovecArray(count);
    }

    public int count() {
        return count;
    }

    /** Entry {@code i} = {@code buffer}'s address and size; the segment must be native and alive. */
    public void set(int i, MemorySegment buffer) {
        checkOpen("set");
        if (!buffer.isNative()) throw new IllegalArgumentException("iovec " + i + ": " + buffer + " is not native memory");
        if (!buffer.scope().isAlive())
            throw new IllegalStateException("iovec " + i + ": the memory of " + buffer + " is no longer mapped (its scope is closed)");
        long at = offsetOf(i);
        memory.set(Native.C_POINTER, at + Uio.BASE_OFFSET, buffer);
        memory.set(Native.C_SIZE_T, at + Uio.LEN_OFFSET, buffer.byteSize());
    }

    /** Entry {@code i} = {@code [address, address + length)}. */
    public void set(int i, long address, long length) {
        checkOpen("set");
        if (length < 0) throw new IllegalArgumentException("iovec " + i + " length " + length);
        long at = offsetOf(i);
        memory.set(Native.C_POINTER, at + Uio.BASE_OFFSET, MemorySegment.ofAddress(address));
        memory.set(Native.C_SIZE_T, at + Uio.LEN_OFFSET, length);
    }

    /** {@code iov_base} of entry {@code i}. */
    public long base(int i) {
        checkOpen("base");
        return memory.get(Native.C_POINTER, offsetOf(i) + Uio.BASE_OFFSET).address();
    }

    /** {@code iov_len} of entry {@code i}. */
    public long length(int i) {
        checkOpen("length");
        return memory.get(Native.C_SIZE_T, offsetOf(i) + Uio.LEN_OFFSET);
    }

    /** The sum of the lengths of entries {@code [from, from + n)}. */
    public long totalLength(int from, int n) {
        long t = 0;
        for (int i = from; i < from + n; i++) t += length(i);
        return t;
    }

    /** The sum of all lengths. */
    public long totalLength() {
        return totalLength(0, count);
    }

    /** The array's memory, for the calls: entries {@code [from, ...)}. */
    MemorySegment from(int first, String call) {
        checkOpen(call);
        return first == 0 ? memory : memory.asSlice(first * SIZE);
    }

    private long offsetOf(int i) {
        return java.util.Objects.checkIndex(i, count) * SIZE;
    }

    void checkOpen(String call) {
        if (!arena.scope().isAlive()) throw UseAfterClose.of(this, call);
    }

    /** Frees the array. Idempotent. */
    @Override
    public void close() {
        if (arena.scope().isAlive()) arena.close();
    }

    @Override
    public String toString() {
        return "iovec array of " + count;
    }
}
