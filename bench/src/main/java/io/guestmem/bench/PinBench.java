package io.guestmem.bench;

import io.guestmem.access.GuestMemory;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ReadableByteChannel;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.*;

/**
 * What {@link GuestMemory#pin()} and a channel transfer's slot holds cost, on 8 slots of the reference layout
 * (4K pages, every page written first):
 * <ul>
 *   <li>{@code readU64} against {@code pinReadU64} (open a pin, one plain read, close it): the pin is an
 *       atomic increment and decrement; the read itself is unchanged under a pin.</li>
 *   <li>{@code pinnedWalk16}: a pin around 16 reads, the shape of a descriptor-chain walk.</li>
 *   <li>{@code readFrom4k}: one 4 KiB readFrom from a channel that fills the buffer from memory (no system
 *       call), so the figure is the transfer's own overhead: the range check, the holds, the buffer over the
 *       slot's view, the dirty marks.</li>
 * </ul>
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
public class PinBench {
    private static final int SLOTS = 8;
    private LayoutGuest guest;
    private GuestMemory mem;
    private long[] gpas;
    private int next;
    private final ReadableByteChannel zeros = new ReadableByteChannel() {
        private final ByteBuffer page = ByteBuffer.allocateDirect(4096);

        @Override
        public int read(ByteBuffer dst) {
            int n = Math.min(dst.remaining(), page.capacity());
            dst.put(page.clear().limit(n));
            return n;
        }

        @Override
        public boolean isOpen() {
            return true;
        }

        @Override
        public void close() {}
    };

    @Setup
    public void setup() {
        guest = new LayoutGuest(SLOTS, "4k");
        mem = guest.memory();
        gpas = guest.gpas();
    }

    @TearDown
    public void tearDown() {
        guest.close();
    }

    private int step() {
        int i = next;
        next = (i + 1) & Layout.MASK;
        return i;
    }

    @Benchmark
    public long readU64() {
        return mem.readU64(gpas[step()]);
    }

    @Benchmark
    public long pinReadU64() {
        try (GuestMemory.Pin p = mem.pin()) {
            return mem.readU64(gpas[step()]);
        }
    }

    @Benchmark
    @OperationsPerInvocation(16)
    public long pinnedWalk16() {
        long acc = 0;
        try (GuestMemory.Pin p = mem.pin()) {
            for (int k = 0; k < 16; k++) acc += mem.readU64(gpas[step()]);
        }
        return acc;
    }

    @Benchmark
    public long readFrom4k() throws IOException {
        return mem.readFrom(gpas[step()] & ~4095L, zeros, 4096);
    }
}
