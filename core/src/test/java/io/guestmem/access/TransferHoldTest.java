package io.guestmem.access;

import static io.guestmem.access.Concurrently.awaitState;
import static io.guestmem.access.Concurrently.start;
import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import io.guestmem.sys.Errno;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.Pipe;
import java.nio.channels.ScatteringByteChannel;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * A memslot change, a region close or the memory's close that would take away the view a channel transfer is
 * reading into is all or nothing: it waits for the transfer (a blocking pipe read that gets its bytes from
 * another thread), or, when the transfer outlasts the drain timeout, it is refused with SlotBusyException and
 * the slot is still there and works. After a change that went through, slices of the old slot are dead.
 * Real pipes, real memory; every wait is bounded ({@link Concurrently}).
 */
class TransferHoldTest {
    static final long MiB = 1 << 20;
    static final long SLOT1 = MiB; // slot 1: [1 MiB, 2 MiB), backed by region b
    static final long P = io.guestmem.sys.Posix.PAGE_SIZE;
    HostRegion a, b;
    Memslots slots;
    GuestMemory gm;
    Pipe pipe;

    @BeforeEach
    void setUp() throws IOException {
        a = HostRegion.anonymous(MiB).create();
        b = HostRegion.anonymous(MiB).create();
        slots = new Memslots();
        gm = new GuestMemory(slots);
        gm.addRam(0, 0, a);
        gm.addRam(1, SLOT1, b);
        pipe = Pipe.open();
    }

    @AfterEach
    void tearDown() throws IOException {
        pipe.sink().close(); // ends any read still blocked, so nothing outlives the test
        pipe.source().close();
        gm.setDrainTimeout(Duration.ofSeconds(5));
        gm.close();
        a.close();
        b.close();
    }

    /** The pipe's source, opening {@code inRead} once the transfer holds its slots and is about to read. */
    static final class SignallingSource implements ScatteringByteChannel {
        final Pipe.SourceChannel in;
        final CountDownLatch inRead = new CountDownLatch(1);

        SignallingSource(Pipe.SourceChannel in) {
            this.in = in;
        }

        @Override
        public int read(ByteBuffer dst) throws IOException {
            inRead.countDown();
            return in.read(dst);
        }

        @Override
        public long read(ByteBuffer[] dsts, int offset, int length) throws IOException {
            inRead.countDown();
            return in.read(dsts, offset, length);
        }

        @Override
        public long read(ByteBuffer[] dsts) throws IOException {
            return read(dsts, 0, dsts.length);
        }

        @Override
        public boolean isOpen() {
            return in.isOpen();
        }

        @Override
        public void close() throws IOException {
            in.close();
        }

        void awaitRead() throws InterruptedException {
            assertTrue(inRead.await(Concurrently.LIMIT_S, TimeUnit.SECONDS), "the transfer never started its read");
        }
    }

    /** A blocked readFrom of 100 bytes at {@code gpa}, already holding its slots. */
    Concurrently.Call<Long> blockedRead(SignallingSource src, long gpa) throws InterruptedException {
        Concurrently.Call<Long> r = start("reader", () -> gm.readFrom(gpa, src, 100));
        src.awaitRead();
        return r;
    }

    void send(byte value, int n) throws IOException {
        byte[] x = new byte[n];
        java.util.Arrays.fill(x, value);
        ByteBuffer bb = ByteBuffer.wrap(x);
        while (bb.hasRemaining()) pipe.sink().write(bb);
    }

    @Test
    void removalWaitsForABlockedReadThatEndsThenKillsTheSlotsSlices() throws Exception {
        gm.setDrainTimeout(Duration.ofSeconds(Concurrently.LIMIT_S));
        MemorySegment slice = gm.slice(SLOT1, 4096).rawSegment();
        SignallingSource src = new SignallingSource(pipe.source());
        AtomicLong readEnded = new AtomicLong();
        Concurrently.Call<Long> reader = start("reader", () -> {
            long n = gm.readFrom(SLOT1 + 0x1000, src, 100);
            readEnded.set(System.nanoTime());
            return n;
        });
        src.awaitRead();
        Concurrently.Call<Long> remover = start("remover", () -> {
            gm.removeRam(1);
            return System.nanoTime();
        });
        awaitState(remover.thread(), Thread.State.TIMED_WAITING); // waiting for the read, in beforeCommit
        assertNotNull(slots.current().byId(1), "not published while the read is in flight");
        slice.set(ValueLayout.JAVA_BYTE, 0, (byte) 1); // the old view still serves meanwhile
        send((byte) 0x5a, 100);
        assertEquals(100, reader.get());
        long removedAt = remover.get();
        assertTrue(readEnded.get() != 0 && readEnded.get() <= removedAt, "the removal completed only after the read");
        assertNull(slots.current().byId(1));
        assertEquals(0x5a, b.segment().get(ValueLayout.JAVA_BYTE, 0x1000 + 99), "the read's bytes are in the memory");
        assertThrows(IllegalStateException.class, () -> slice.set(ValueLayout.JAVA_BYTE, 0, (byte) 2),
                "a slice of the removed slot accepts no writes");
        assertThrows(IllegalStateException.class, () -> slice.get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(1, b.segment().get(ValueLayout.JAVA_BYTE, 0), "the memory itself is untouched");
        assertEquals(GuestMemoryException.Reason.NOT_RAM,
                assertThrows(PartialAccessException.class, () -> gm.readU8(SLOT1)).reason());
    }

    @Test
    void removalOfASlotHeldPastTheTimeoutIsVetoedAndChangesNothing() throws Exception {
        gm.setDrainTimeout(Duration.ofMillis(200));
        MemorySegment slice = gm.slice(SLOT1, 4096).rawSegment();
        long generation = slots.generation();
        SignallingSource src = new SignallingSource(pipe.source());
        Concurrently.Call<Long> reader = blockedRead(src, SLOT1 + 0x2000);

        long t0 = System.nanoTime();
        SlotBusyException e = assertThrows(SlotBusyException.class, () -> gm.removeRam(1));
        assertTrue(System.nanoTime() - t0 >= TimeUnit.MILLISECONDS.toNanos(190), "waited the timeout first");
        assertEquals(Errno.EBUSY, e.errno());
        assertEquals(List.of(1), e.slotIds());
        assertEquals(1, e.transfers());
        assertTrue(e.getMessage().startsWith("EBUSY from setMemslot(as 0 slot 1) DELETE: slot 1 is held by 1 channel transfer"),
                e.getMessage());
        assertTrue(e.getMessage().contains("nothing was changed"), e.getMessage());

        // nothing was published, and the slot, its view and its slices work
        assertEquals(generation, slots.generation());
        assertNotNull(slots.current().byId(1));
        assertEquals(generation, gm.memslotSet().generation());
        gm.writeU32(SLOT1 + 8, 0xcafe);
        assertEquals(0xcafe, slice.get(ValueLayout.JAVA_INT_UNALIGNED, 8));
        slice.set(ValueLayout.JAVA_INT_UNALIGNED, 12, 0xbeef);
        assertEquals(0xbeef, gm.readU32(SLOT1 + 12));

        send((byte) 7, 100);
        assertEquals(100, reader.get(), "the transfer went on undisturbed");
        assertEquals(7, gm.readU8(SLOT1 + 0x2000 + 99));
        assertTrue(gm.collectDirty(1).contains((SLOT1 + 0x2000) / P), "the read's page is dirty");

        gm.removeRam(1); // no transfer now: at once
        assertNull(slots.current().byId(1));
        assertThrows(IllegalStateException.class, () -> slice.get(ValueLayout.JAVA_INT_UNALIGNED, 8));
    }

    @Test
    void aTransferArrivingWhileARemovalIsPendingWaitsForItsOutcomeAndThenSeesTheNewTable() throws Exception {
        gm.setDrainTimeout(Duration.ofSeconds(Concurrently.LIMIT_S));
        SignallingSource src = new SignallingSource(pipe.source());
        Concurrently.Call<Long> first = blockedRead(src, SLOT1);
        Concurrently.Call<Void> remover = start("remover", () -> {
            gm.removeRam(1);
            return null;
        });
        awaitState(remover.thread(), Thread.State.TIMED_WAITING);

        Pipe other = Pipe.open();
        try (Pipe.SinkChannel sink = other.sink(); Pipe.SourceChannel source = other.source()) {
            sink.write(ByteBuffer.wrap(new byte[] {1, 2, 3, 4}));
            Concurrently.Call<Long> second = start("second reader", () -> gm.readFrom(SLOT1 + 64, source, 4));
            awaitState(second.thread(), Thread.State.WAITING); // for the removal's outcome, holding nothing
            assertFalse(remover.isDone());

            send((byte) 9, 100); // the first read ends, the removal goes through
            assertEquals(100, first.get());
            remover.get();
            PartialAccessException e = second.failure(PartialAccessException.class);
            assertEquals(GuestMemoryException.Reason.NOT_RAM, e.reason(), "it re-read the table: the slot is gone");
            assertEquals(0, e.bytesDone());
            ByteBuffer left = ByteBuffer.allocate(4);
            source.read(left);
            assertArrayEquals(new byte[] {1, 2, 3, 4}, left.array(), "nothing was taken from its channel");
        }
    }

    @Test
    void aMoveWaitsLikeADeleteAndTheMovedSlotSeesTheBytes() throws Exception {
        gm.setDrainTimeout(Duration.ofSeconds(Concurrently.LIMIT_S));
        MemorySegment slice = gm.slice(SLOT1, 4096).rawSegment();
        SignallingSource src = new SignallingSource(pipe.source());
        Concurrently.Call<Long> reader = blockedRead(src, SLOT1 + 0x3000);
        Concurrently.Call<Void> mover = start("mover", () -> {
            slots.setMemslot(0, 1, 0, 4 * MiB, MiB, b.address());
            return null;
        });
        awaitState(mover.thread(), Thread.State.TIMED_WAITING);
        send((byte) 3, 100);
        assertEquals(100, reader.get());
        mover.get();
        assertEquals(3, gm.readU8(4 * MiB + 0x3000 + 99), "the moved slot is the same memory");
        assertThrows(IllegalStateException.class, () -> slice.get(ValueLayout.JAVA_BYTE, 0), "the old view is closed");
    }

    @Test
    void aFlagsOnlyChangeDoesNotWaitAndTheTransferKeepsItsDirtyLog() throws Exception {
        gm.setDrainTimeout(Duration.ofSeconds(Concurrently.LIMIT_S));
        SignallingSource src = new SignallingSource(pipe.source());
        Concurrently.Call<Long> reader = blockedRead(src, SLOT1);
        // dirty logging on: the same view, the same hold, the same bitmap; no wait for the transfer
        slots.setMemslot(0, 1, io.guestmem.memslot.Memslot.LOG_DIRTY_PAGES, SLOT1, MiB, b.address());
        assertFalse(reader.isDone());
        send((byte) 4, 100);
        assertEquals(100, reader.get());
        DirtyPages d = gm.collectDirty(1);
        assertEquals(1, d.count(), "the page the transfer stored into");
        assertTrue(d.contains(SLOT1 / P));
    }

    @Test
    void aChangeAnotherObserverVetoesLeavesNoMarkBehind() throws Exception {
        // an observer after ours (a KVM mirror, a slot lock) refuses the delete ours already waited for
        slots.addObserver(new io.guestmem.memslot.MemslotObserver() {
            @Override
            public void beforeCommit(io.guestmem.memslot.MemslotChange change) {
                if (change.kind() == io.guestmem.memslot.MemslotChange.Kind.DELETE)
                    throw new IllegalStateException("vetoed by a later observer");
            }
        });
        assertEquals("vetoed by a later observer", assertThrows(IllegalStateException.class, () -> gm.removeRam(1)).getMessage());
        assertNotNull(slots.current().byId(1));
        // rolled back: transfers and pins on the slot go ahead at once (a mark left behind would block them)
        gm.setDrainTimeout(Duration.ZERO);
        send((byte) 8, 100);
        assertEquals(100, start("reader", () -> gm.readFrom(SLOT1, pipe.source(), 100)).get());
        assertEquals(8, gm.readU8(SLOT1 + 99));
        start("pin", () -> {
            gm.pin().close();
            return null;
        }).get();
    }

    @Test
    void closingTheRegionUnderABlockedReadNeverUnmapsItWaitsThenFailsCleanly() throws Exception {
        gm.setDrainTimeout(Duration.ofMillis(200));
        MemorySegment slice = gm.slice(SLOT1, 4096).rawSegment();
        SignallingSource src = new SignallingSource(pipe.source());
        Concurrently.Call<Long> reader = blockedRead(src, SLOT1 + 0x100);

        SlotBusyException e = assertThrows(SlotBusyException.class, () -> b.close());
        assertEquals(List.of(1), e.slotIds());
        assertTrue(e.getMessage().startsWith("EBUSY from close(" + b + "): slot 1 is held by 1 channel transfer"),
                e.getMessage());
        assertTrue(b.isOpen(), "the region is still open and mapped");
        b.segment().set(ValueLayout.JAVA_BYTE, 0, (byte) 0x11);
        assertEquals(0x11, gm.readU8(SLOT1), "and still guest memory");
        slice.set(ValueLayout.JAVA_BYTE, 1, (byte) 0x22);
        assertEquals(0x22, gm.readU8(SLOT1 + 1));

        // now the close waits for the read instead
        gm.setDrainTimeout(Duration.ofSeconds(Concurrently.LIMIT_S));
        Concurrently.Call<Void> closer = start("closer", () -> {
            b.close();
            return null;
        });
        awaitState(closer.thread(), Thread.State.TIMED_WAITING);
        assertTrue(b.isOpen());
        send((byte) 5, 100);
        assertEquals(100, reader.get());
        closer.get();
        assertFalse(b.isOpen());
        assertThrows(IllegalStateException.class, () -> slice.get(ValueLayout.JAVA_BYTE, 0));
        assertEquals(GuestMemoryException.Reason.NO_HOST_MEMORY,
                assertThrows(PartialAccessException.class, () -> gm.readU8(SLOT1)).reason());
        assertNotNull(slots.current().byId(1), "the memslot stays; it only lost its host memory");
    }

    @Test
    void closingTheGuestMemoryWaitsForTransfersOrFailsAndStaysOpen() throws Exception {
        gm.setDrainTimeout(Duration.ofMillis(200));
        SignallingSource src = new SignallingSource(pipe.source());
        Concurrently.Call<Long> reader = blockedRead(src, SLOT1);
        SlotBusyException e = assertThrows(SlotBusyException.class, () -> gm.close());
        assertEquals(List.of(1), e.slotIds());
        gm.writeU64(SLOT1 + 512, 42); // still open
        assertEquals(42, gm.readU64(SLOT1 + 512));
        send((byte) 6, 100);
        assertEquals(100, reader.get());
        MemorySegment slice = gm.slice(SLOT1, 8).rawSegment();
        gm.close();
        assertThrows(IllegalStateException.class, () -> slice.get(ValueLayout.JAVA_BYTE, 0));
        assertTrue(b.isOpen());
        b.close(); // the closed memory no longer guards it
    }

    /**
     * The fd path holds too: a readv into slot 1 blocked on an empty pipe makes a removal wait until the pipe
     * gets its bytes. The reader is known to be in the system call when its thread (found by name in
     * /proc/self/task) sleeps in the kernel several polls in a row: before the call it runs Java code only.
     */
    @Test
    void removalWaitsForABlockedReadvOnAPipe() throws Exception {
        gm.setDrainTimeout(Duration.ofSeconds(Concurrently.LIMIT_S));
        try (io.guestmem.sys.FileFd.Pipe p = io.guestmem.sys.FileFd.pipe()) {
            AtomicLong readEnded = new AtomicLong();
            Concurrently.Call<Long> reader = start("gm-readv", () -> {
                long n = gm.readv(p.readEnd().fd(), SLOT1 + 0x3000, 100);
                readEnded.set(System.nanoTime());
                return n;
            });
            awaitSleepingInKernel("gm-readv");
            Concurrently.Call<Long> remover = start("remover", () -> {
                gm.removeRam(1);
                return System.nanoTime();
            });
            awaitState(remover.thread(), Thread.State.TIMED_WAITING); // waiting for the readv, in beforeCommit
            assertNotNull(slots.current().byId(1), "not published while the readv is in flight");
            byte[] x = new byte[100];
            java.util.Arrays.fill(x, (byte) 0x33);
            try (var w = new java.io.FileOutputStream("/proc/self/fd/" + p.writeEnd().fd())) { // the pipe, reopened
                w.write(x);
            }
            assertEquals(100, reader.get());
            long removedAt = remover.get();
            assertTrue(readEnded.get() != 0 && readEnded.get() <= removedAt, "the removal completed only after the readv");
            assertEquals(0x33, b.segment().get(ValueLayout.JAVA_BYTE, 0x3000 + 99), "the readv's bytes are in the memory");
            assertNull(slots.current().byId(1));
        }
    }

    /** Waits until the thread named {@code name} has been asleep in the kernel (state S) for 5 polls in a row. */
    static void awaitSleepingInKernel(String name) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Concurrently.LIMIT_S);
        int streak = 0;
        while (streak < 5) {
            assertTrue(System.nanoTime() < deadline, "thread " + name + " never blocked in the kernel");
            boolean asleep = false;
            try (var tasks = java.nio.file.Files.list(java.nio.file.Path.of("/proc/self/task"))) {
                for (var t : (Iterable<java.nio.file.Path>) tasks::iterator) {
                    try {
                        if (!java.nio.file.Files.readString(t.resolve("comm")).strip().equals(name)) continue;
                        String stat = java.nio.file.Files.readString(t.resolve("stat"));
                        asleep = stat.substring(stat.lastIndexOf(')') + 2).startsWith("S");
                    } catch (java.io.IOException gone) {
                        // a thread that ended meanwhile
                    }
                }
            }
            streak = asleep ? streak + 1 : 0;
            Thread.sleep(20);
        }
    }

    /** A slice's own channel read holds its slot too: a removal waits for it, then the slice is dead. */
    @Test
    void removalWaitsForABlockedSliceReadThenTheSliceIsDead() throws Exception {
        gm.setDrainTimeout(Duration.ofSeconds(Concurrently.LIMIT_S));
        GuestSlice slice = gm.slice(SLOT1 + 0x4000, 100);
        SignallingSource src = new SignallingSource(pipe.source());
        AtomicLong readEnded = new AtomicLong();
        Concurrently.Call<Long> reader = start("slice-reader", () -> {
            long n = slice.readFrom(src);
            readEnded.set(System.nanoTime());
            return n;
        });
        src.awaitRead();
        Concurrently.Call<Long> remover = start("remover", () -> {
            gm.removeRam(1);
            return System.nanoTime();
        });
        awaitState(remover.thread(), Thread.State.TIMED_WAITING); // waiting for the slice's read, in beforeCommit
        assertNotNull(slots.current().byId(1), "not published while the slice's read is in flight");
        send((byte) 0x44, 100);
        assertEquals(100, reader.get());
        long removedAt = remover.get();
        assertTrue(readEnded.get() != 0 && readEnded.get() <= removedAt, "the removal completed only after the read");
        assertEquals(0x44, b.segment().get(ValueLayout.JAVA_BYTE, 0x4000 + 99), "the read's bytes are in the memory");
        assertNull(slots.current().byId(1));
        assertThrows(IllegalStateException.class, () -> slice.readFrom(src), "the slice died with its slot");
        assertThrows(IllegalStateException.class, () -> slice.writeU8(0, 1));
    }
}
