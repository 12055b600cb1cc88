package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import io.guestmem.virtio.VirtqDescriptor;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * A closed GuestMemory refuses every access with IllegalStateException naming the call ("guest memory is
 * closed: readU64()"), not with a typed access error as if its RAM were a hole: at gpas that were RAM,
 * misaligned, of zero bytes, and in threads that were looping on the fast path when it closed.
 */
class ClosedGuestMemoryTest {
    static final long MiB = 1 << 20;

    @Test
    void everyAccessAfterCloseIsAnIllegalStateExceptionNamingTheCall() {
        try (HostRegion r = HostRegion.anonymous(MiB).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(0, 0, r);
            gm.writeU64(0x100, 1);
            gm.close();
            gm.close(); // idempotent
            List<Use> uses = List.of(
                    new Use("read()", () -> gm.read(0x100, new byte[8])),
                    new Use("read()", () -> gm.read(0x100, new byte[0])),
                    new Use("read()", () -> gm.read(0x100, ByteBuffer.allocate(8))),
                    new Use("read()", () -> gm.read(0x100, MemorySegment.ofArray(new byte[8]))),
                    new Use("write()", () -> gm.write(0x100, new byte[8])),
                    new Use("write()", () -> gm.write(0x100, new byte[0])),
                    new Use("write()", () -> gm.write(0x100, ByteBuffer.allocate(0))),
                    new Use("fill()", () -> gm.fill(0x100, 8, (byte) 1)),
                    new Use("fill()", () -> gm.fill(0x100, 0, (byte) 1)),
                    new Use("readU8()", () -> gm.readU8(0x100)),
                    new Use("readU16()", () -> gm.readU16(0x100)),
                    new Use("readU32()", () -> gm.readU32(0x100)),
                    new Use("readU64()", () -> gm.readU64(0x100)),
                    new Use("writeU8()", () -> gm.writeU8(0x100, 1)),
                    new Use("writeU16()", () -> gm.writeU16(0x100, 1)),
                    new Use("writeU32()", () -> gm.writeU32(0x100, 1)),
                    new Use("writeU64()", () -> gm.writeU64(0x100, 1)),
                    new Use("readU64Volatile()", () -> gm.readU64Volatile(0x100)),
                    new Use("writeU32Volatile()", () -> gm.writeU32Volatile(0x100, 1)),
                    new Use("readU8Acquire()", () -> gm.readU8Acquire(0x100)),
                    new Use("readU16Acquire()", () -> gm.readU16Acquire(0x100)),
                    new Use("readU32Acquire()", () -> gm.readU32Acquire(0x100)),
                    new Use("readU64Acquire()", () -> gm.readU64Acquire(0x101)), // misaligned: closed comes first
                    new Use("writeU8Release()", () -> gm.writeU8Release(0x100, 1)),
                    new Use("writeU16Release()", () -> gm.writeU16Release(0x100, 1)),
                    new Use("writeU64Release()", () -> gm.writeU64Release(0x100, 1)),
                    new Use("compareAndSetU32()", () -> gm.compareAndSetU32(0x100, 0, 1)),
                    new Use("getAndAddU64()", () -> gm.getAndAddU64(0x100, 1)),
                    new Use("slice()", () -> gm.slice(0x100, 8)),
                    new Use("slice()", () -> gm.slice(0x100, 0)),
                    new Use("struct()", () -> gm.struct(0x100, VirtqDescriptor.LAYOUT)),
                    new Use("readStruct()", () -> gm.readStruct(0x100, VirtqDescriptor.LAYOUT)),
                    new Use("writeStruct()", () -> gm.writeStruct(0x100, VirtqDescriptor.LAYOUT, MemorySegment.ofArray(new long[2]))),
                    new Use("markDirty()", () -> gm.markDirty(0x100, 8)),
                    new Use("readFrom()", () -> uncheck(() -> gm.readFrom(0x100, Channels.newChannel(new ByteArrayInputStream(new byte[8])), 8))),
                    new Use("writeTo()", () -> uncheck(() -> gm.writeTo(0x100, Channels.newChannel(new ByteArrayOutputStream()), 0))),
                    new Use("pagesToSend()", () -> gm.pagesToSend(null)),
                    new Use("slot 0's dirty log", () -> gm.collectDirty(0)),
                    new Use("slot 0's dirty log", () -> gm.dirtyBitmap(0)));
            for (Use u : uses) {
                IllegalStateException e = assertThrows(IllegalStateException.class, u.run()::run, u.call());
                assertEquals("guest memory is closed: " + u.call(), e.getMessage());
            }
            assertEquals(1, r.segment().get(java.lang.foreign.ValueLayout.JAVA_LONG, 0x100), "the region stays, untouched");
        }
    }

    record Use(String call, Runnable run) {}

    interface IoCall {
        Object call() throws Exception;
    }

    static void uncheck(IoCall c) {
        try {
            c.call();
        } catch (RuntimeException e) {
            throw e;
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void aLoopOnTheFastPathEndsWithIllegalStateExceptionWhenTheMemoryCloses() throws Exception {
        try (HostRegion r = HostRegion.anonymous(MiB).create()) {
            GuestMemory gm = new GuestMemory(new Memslots());
            gm.addRam(0, 0, r);
            AtomicReference<Throwable> ended = new AtomicReference<>();
            Thread reader = new Thread(() -> {
                try {
                    long sink = 0;
                    for (long n = 0; ; n++) {
                        sink += gm.readU64((n * 8) & (MiB - 8)); // compiled, the table in registers
                        gm.writeU32((n * 4) & (MiB - 4), (int) sink);
                    }
                } catch (Throwable t) {
                    ended.set(t);
                }
            }, "device");
            reader.start();
            Thread.sleep(300); // let it compile and run hot
            gm.close();
            reader.join(TimeUnit.SECONDS.toMillis(30));
            assertFalse(reader.isAlive(), "the loop ended");
            Throwable t = ended.get();
            assertInstanceOf(IllegalStateException.class, t, "not a typed access error: " + t);
            assertTrue(t.getMessage().startsWith("guest memory is closed: "), t.getMessage());
        }
    }
}
