package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

/**
 * A second thread standing in for a guest vCPU touches guest RAM through the host region's raw segment
 * (as a guest would, without GuestMemory), while the device side uses GuestMemory's volatile and atomic
 * accessors. Both sides must agree on every value.
 */
class ContentionTest {
    static final long MiB = 1 << 20;
    static final VarHandle G16 = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    static final VarHandle G32 = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    static final VarHandle G64 = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();

    // A split virtqueue's avail and used rings (virtio 1.x 2.7.6/2.7.8), 256 entries, in slot 0.
    static final int QSIZE = 256;
    static final long AVAIL = 0x1000, AVAIL_IDX = AVAIL + 2, AVAIL_RING = AVAIL + 4;
    static final long USED = 0x2000, USED_IDX = USED + 2, USED_RING = USED + 4; // elem: u32 id, u32 len

    @Test
    void virtqueueGuestAndDeviceAgreeUnderContention() throws Exception {
        final int total = 200_000;
        try (HostRegion r = HostRegion.anonymous(MiB).create()) {
            Memslots slots = new Memslots();
            GuestMemory gm = new GuestMemory(slots);
            gm.addRam(0, 0, r);
            MemorySegment guest = r.segment(); // the "guest's" view: raw memory, no GuestMemory
            AtomicReference<Throwable> failure = new AtomicReference<>();
            long[] guestSums = new long[2];

            Thread vcpu = new Thread(() -> {
                try {
                    int availIdx = 0, lastUsed = 0;
                    long usedIds = 0, usedLens = 0;
                    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
                    while (availIdx < total || lastUsed < total) {
                        int usedIdx = Short.toUnsignedInt((short) G16.getOpaque(guest, USED_IDX));
                        VarHandle.acquireFence();
                        while ((lastUsed & 0xffff) != usedIdx) { // consume used entries
                            long e = USED_RING + 8L * (lastUsed % QSIZE);
                            usedIds += (int) G32.get(guest, e);
                            usedLens += (int) G32.get(guest, e + 4);
                            lastUsed++;
                        }
                        // offer a batch of descriptors while the ring has room
                        int room = QSIZE - (availIdx - lastUsed);
                        for (int k = 0; k < Math.min(room, 17) && availIdx < total; k++, availIdx++) {
                            G16.set(guest, AVAIL_RING + 2L * (availIdx % QSIZE), (short) (availIdx % QSIZE));
                            VarHandle.releaseFence();
                            G16.setOpaque(guest, AVAIL_IDX, (short) (availIdx + 1));
                        }
                        if (System.nanoTime() > deadline) throw new AssertionError("vcpu stuck at " + availIdx + "/" + lastUsed);
                    }
                    guestSums[0] = usedIds;
                    guestSums[1] = usedLens;
                } catch (Throwable t) {
                    failure.set(t);
                }
            }, "vcpu");
            vcpu.start();

            // the device: consumes avail entries, returns each in the used ring with len = head * 3 + 1
            int lastAvail = 0;
            long headSum = 0;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (lastAvail < total) {
                int idx = gm.readU16Volatile(AVAIL_IDX);
                VarHandle.acquireFence();
                while ((lastAvail & 0xffff) != idx) {
                    int head = gm.readU16(AVAIL_RING + 2L * (lastAvail % QSIZE));
                    headSum += head;
                    long e = USED_RING + 8L * (lastAvail % QSIZE);
                    gm.writeU32(e, head);
                    gm.writeU32(e + 4, head * 3 + 1);
                    lastAvail++;
                    VarHandle.releaseFence();
                    gm.writeU16Volatile(USED_IDX, lastAvail);
                }
                if (failure.get() != null || System.nanoTime() > deadline) break;
            }
            vcpu.join(TimeUnit.SECONDS.toMillis(60));
            if (failure.get() != null) throw new AssertionError("vcpu thread failed", failure.get());
            assertEquals(total, lastAvail);
            long expectedHeads = 0;
            for (int n = 0; n < total; n++) expectedHeads += n % QSIZE;
            assertEquals(expectedHeads, headSum, "device saw every head the guest offered, once");
            assertEquals(expectedHeads, guestSums[0], "guest got every head back, once");
            assertEquals(3 * expectedHeads + total, guestSums[1], "and the len the device wrote");
            gm.close();
        }
    }

    @Test
    void atomicsOfGuestMemoryAndAGuestThreadNeverLoseAnUpdate() throws Exception {
        final int perThread = 300_000;
        try (HostRegion r = HostRegion.anonymous(MiB).create()) {
            Memslots slots = new Memslots();
            GuestMemory gm = new GuestMemory(slots);
            gm.addRam(0, 0x10000, r);
            long counter64 = 0x10000 + 0x40, counter32 = 0x10000 + 0x80;
            MemorySegment guest = r.segment();
            Thread vcpu = new Thread(() -> {
                for (int n = 0; n < perThread; n++) {
                    G64.getAndAdd(guest, 0x40L, 1L);
                    int v;
                    do v = (int) G32.getVolatile(guest, 0x80L); while (!G32.compareAndSet(guest, 0x80L, v, v + 2));
                }
            });
            Thread device2 = new Thread(() -> {
                for (int n = 0; n < perThread; n++) {
                    gm.getAndAddU64(counter64, 1);
                    gm.getAndAddU32(counter32, 2);
                }
            });
            vcpu.start();
            device2.start();
            for (int n = 0; n < perThread; n++) {
                gm.getAndAddU64(counter64, 1);
                int v;
                do v = gm.readU32Volatile(counter32); while (!gm.compareAndSetU32(counter32, v, v + 2));
            }
            vcpu.join();
            device2.join();
            assertEquals(3L * perThread, gm.readU64Volatile(counter64));
            assertEquals(3L * perThread, (long) G64.getVolatile(guest, 0x40L));
            assertEquals(6 * perThread, gm.readU32(counter32));
            gm.close();
        }
    }
}
