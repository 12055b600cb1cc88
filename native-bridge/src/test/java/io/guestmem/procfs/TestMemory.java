package io.guestmem.procfs;

import static io.guestmem.ffm.Native.C_INT;
import static io.guestmem.ffm.Native.C_LONG;
import static io.guestmem.ffm.Native.C_POINTER;

import io.guestmem.sys.Arch;
import io.guestmem.sys.Mman;
import io.guestmem.ffm.Native;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Test-local stopgap until io.guestmem.host (HostRegion, Mman.madvise, PerfEvent) lands in main: plain
 * mmap'd regions, touching, madvise, the hugetlb pool raise/restore and a perf ring mapping.
 */
final class TestMemory implements AutoCloseable {
    static final int MADV_HUGEPAGE = 14;
    private static final MethodHandle MADVISE = Native.errnoCall("madvise",
            FunctionDescriptor.of(C_INT, C_POINTER, C_LONG, C_INT));

    final long address;
    final long length;
    private final int fd;
    private boolean closed;

    private TestMemory(long address, long length, int fd) {
        this.address = address;
        this.length = length;
        this.fd = fd;
    }

    static TestMemory anon(long length) {
        return new TestMemory(Mman.mmap(0, length, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0), length, -1);
    }

    static TestMemory sharedAnon(long length) {
        return new TestMemory(Mman.mmap(0, length, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_SHARED | Mman.MAP_ANONYMOUS, -1, 0), length, -1);
    }

    static TestMemory hugetlb(long length, int sizeShift) {
        return new TestMemory(Mman.mmap(0, length, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS | Mman.MAP_HUGETLB | (sizeShift << Mman.MAP_HUGE_SHIFT), -1, 0),
                length, -1);
    }

    /** An anonymous mapping of {@code length} aligned to {@code align} (over-map and trim). */
    static TestMemory anonAligned(long length, long align) {
        long raw = Mman.mmap(0, length + align, Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
        long start = (raw + align - 1) & -align;
        if (start > raw) Mman.munmap(raw, start - raw);
        long tail = raw + length + align - (start + length);
        if (tail > 0) Mman.munmap(start + length, tail);
        return new TestMemory(start, length, -1);
    }

    static void madvise(long addr, long len, int advice) {
        try {
            MemorySegment st = Native.state();
            int r = (int) MADVISE.invokeExact(st, MemorySegment.ofAddress(addr), len, advice);
            if (r < 0) throw new SyscallException(Native.errno(st), "madvise(" + advice + ")");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    MemorySegment segment() {
        return MemorySegment.ofAddress(address).reinterpret(length);
    }

    /** Writes one byte in every {@code step} bytes. */
    void touchWrite(long step) {
        MemorySegment s = segment();
        for (long o = 0; o < length; o += step) s.set(ValueLayout.JAVA_BYTE, o, (byte) 0x5a);
    }

    /** Reads one byte in every {@code step} bytes (maps the zero page in private anonymous memory). */
    long touchRead(long step) {
        MemorySegment s = segment();
        long sum = 0;
        for (long o = 0; o < length; o += step) sum += s.get(ValueLayout.JAVA_BYTE, o);
        return sum;
    }

    long pages() {
        return length / Posix.PAGE_SIZE;
    }

    /**
     * A perf_event ring buffer (PERF_TYPE_SOFTWARE / PERF_COUNT_SW_DUMMY, 1 + 8 pages) mapped shared: the
     * kernel maps it VM_PFNMAP | VM_IO.
     */
    static TestMemory perfRing() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment attr = a.allocate(128, 8);
            attr.set(ValueLayout.JAVA_INT, 0, 1);      // type = PERF_TYPE_SOFTWARE
            attr.set(ValueLayout.JAVA_INT, 4, 128);    // size
            attr.set(ValueLayout.JAVA_LONG, 8, 9);     // config = PERF_COUNT_SW_DUMMY
            // flags: disabled(bit0) | exclude_kernel(bit5) | exclude_hv(bit6)
            attr.set(ValueLayout.JAVA_LONG, 40, 1L | (1L << 5) | (1L << 6));
            long fd = Posix.syscallRaw(Arch.CURRENT.sysPerfEventOpen(), attr.address(), 0, -1, -1, 0x8 /* CLOEXEC */, 0);
            if (fd < 0) throw new SyscallException((int) -fd, "perf_event_open(SW_DUMMY)");
            long len = 9 * Posix.PAGE_SIZE;
            long addr;
            try {
                addr = Mman.mmap(0, len, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, (int) fd, 0);
            } catch (RuntimeException e) {
                Posix.close((int) fd);
                throw e;
            }
            return new TestMemory(addr, len, (int) fd);
        }
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        Mman.munmap(address, length);
        if (fd >= 0) Posix.close(fd);
    }

    /** The hugetlb pool of one size, raised by n pages; restores exactly what it added. */
    static final class Pool implements AutoCloseable {
        final Path nr;
        final long before;
        final long added;

        Pool(long sizeKb, long n) throws IOException {
            nr = Path.of("/sys/kernel/mm/hugepages/hugepages-" + sizeKb + "kB/nr_hugepages");
            before = Long.parseLong(Files.readString(nr).trim());
            Files.writeString(nr, Long.toString(before + n));
            long now = Long.parseLong(Files.readString(nr).trim());
            added = now - before;
        }

        boolean complete(long n) {
            return added >= n;
        }

        @Override
        public void close() throws IOException {
            long now = Long.parseLong(Files.readString(nr).trim());
            Files.writeString(nr, Long.toString(Math.max(0, now - added)));
        }
    }
}
