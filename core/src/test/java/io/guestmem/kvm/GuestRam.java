package io.guestmem.kvm;

import io.guestmem.sys.Mman;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Test-only guest RAM: an mmap the test owns, with a segment to read and write it.
 * TODO: switch to io.guestmem.host.HostRegion once the `host` branch is in main.
 */
public final class GuestRam implements AutoCloseable {
    public final long addr;
    public final long size;
    public final MemorySegment seg;
    private boolean closed;

    private GuestRam(long addr, long size) {
        this.addr = addr;
        this.size = size;
        this.seg = MemorySegment.ofAddress(addr).reinterpret(size);
    }

    public static GuestRam anonymous(long size) {
        return new GuestRam(Mman.mmap(0, size, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0), size);
    }

    /** Adopts an existing mapping (e.g. a guest_memfd mapped MAP_SHARED); close() unmaps it. */
    public static GuestRam adopt(long addr, long size) {
        return new GuestRam(addr, size);
    }

    public void load(long offset, byte[] bytes) {
        MemorySegment.copy(bytes, 0, seg, ValueLayout.JAVA_BYTE, offset, bytes.length);
    }

    /** Loads every chunk of {@code program}'s image, this RAM being the slot that starts at {@code slotGpa}. */
    public void load(io.guestmem.kvm.GuestProgram program, long slotGpa) {
        for (io.guestmem.kvm.GuestProgram.Chunk c : program.image()) load(c.gpa() - slotGpa, c.bytes());
    }

    public long u64(long offset) {
        return seg.get(ValueLayout.JAVA_LONG_UNALIGNED, offset);
    }

    public void putU64(long offset, long v) {
        seg.set(ValueLayout.JAVA_LONG_UNALIGNED, offset, v);
    }

    public byte u8(long offset) {
        return seg.get(ValueLayout.JAVA_BYTE, offset);
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        Mman.munmap(addr, size);
    }
}
