package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The acquire/release accessors on real memory: values, alignment, read-only slots, dirty marks, both the
 * fast path and the checked path, and message passing between two threads with nothing but a release of an
 * index and its acquire.
 */
class AcquireReleaseTest {
    static final long MiB = 1 << 20;
    static final long P = io.guestmem.sys.Posix.PAGE_SIZE;

    Memslots slots;
    GuestMemory gm;
    HostRegion ram, rom;

    @BeforeEach
    void setUp() {
        slots = new Memslots();
        gm = new GuestMemory(slots);
        ram = HostRegion.anonymous(MiB).create();
        rom = HostRegion.anonymous(MiB).create();
        gm.addRam(0, 0, ram);
        gm.addRam(1, 4 * MiB, rom, 0, MiB, Memslot.READONLY);
    }

    @AfterEach
    void tearDown() {
        gm.close();
        ram.close();
        rom.close();
    }

    @Test
    void valuesRoundTripLittleEndianAndWritesMarkTheirPage() {
        gm.writeU8Release(3 * P + 1, 0x1a5);
        gm.writeU16Release(5 * P + 2, 0xfedc);
        gm.writeU32Release(7 * P + 4, 0x89abcdef);
        gm.writeU64Release(9 * P + 8, 0x0123456789abcdefL);
        assertEquals(0xa5, gm.readU8Acquire(3 * P + 1), "u8 zero-extended");
        assertEquals(0xfedc, gm.readU16Acquire(5 * P + 2), "u16 zero-extended");
        assertEquals(0x89abcdef, gm.readU32Acquire(7 * P + 4));
        assertEquals(0x0123456789abcdefL, gm.readU64Acquire(9 * P + 8));
        // the bytes in host memory, little-endian
        assertEquals((byte) 0xdc, ram.segment().get(ValueLayout.JAVA_BYTE, 5 * P + 2));
        assertEquals((byte) 0xef, ram.segment().get(ValueLayout.JAVA_BYTE, 7 * P + 4));
        assertEquals((byte) 0xef, ram.segment().get(ValueLayout.JAVA_BYTE, 9 * P + 8));
        assertEquals((byte) 0x01, ram.segment().get(ValueLayout.JAVA_BYTE, 9 * P + 15));
        // and the other flavours agree
        assertEquals(0x0123456789abcdefL, gm.readU64(9 * P + 8));
        assertEquals(0x89abcdef, gm.readU32Volatile(7 * P + 4));
        gm.writeU32(7 * P + 4, 5);
        assertEquals(5, gm.readU32Acquire(7 * P + 4));
        assertArrayEquals(new long[] {3, 5, 7, 9}, gm.collectDirty(0).gfns(), "one page per release write");
        gm.readU64Acquire(11 * P);
        assertEquals(0, gm.collectDirty(0).count(), "acquire reads mark nothing");
    }

    @Test
    void misalignedAccessesAreRefusedWithATypedErrorAndTouchNothing() {
        long g = 2 * P;
        for (Runnable r : new Runnable[] {
                () -> gm.readU16Acquire(g + 1), () -> gm.readU32Acquire(g + 2), () -> gm.readU64Acquire(g + 4),
                () -> gm.writeU16Release(g + 1, 1), () -> gm.writeU32Release(g + 2, 1), () -> gm.writeU64Release(g + 4, 1),
                () -> gm.readU64Acquire(g + 7), () -> gm.writeU64Release(g + 1, 1)}) {
            MisalignedAccessException e = assertThrows(MisalignedAccessException.class, r::run);
            assertEquals(GuestMemoryException.Reason.MISALIGNED, e.reason());
            assertEquals(0, e.bytesDone());
            assertEquals(0, e.slotId());
            assertTrue(e.firstBadGpa() > g && e.firstBadGpa() < g + 8);
        }
        assertEquals(0, ram.segment().get(ValueLayout.JAVA_LONG, g), "nothing written");
        assertEquals(0, gm.collectDirty(0).count(), "nothing marked");
        // u8 is never misaligned; a misaligned access in a hole is still a misaligned access
        gm.writeU8Release(g + 3, 1);
        assertEquals(-1, assertThrows(MisalignedAccessException.class, () -> gm.readU32Acquire(2 * MiB + 2)).slotId());
        assertThrows(PartialAccessException.class, () -> gm.readU32Acquire(2 * MiB));
    }

    @Test
    void aReadOnlySlotRefusesReleaseWritesAndServesAcquireReads() {
        rom.segment().set(ValueLayout.JAVA_LONG, 64, 0x55L);
        assertEquals(0x55L, gm.readU64Acquire(4 * MiB + 64));
        for (Runnable r : new Runnable[] {
                () -> gm.writeU8Release(4 * MiB + 64, 1), () -> gm.writeU16Release(4 * MiB + 64, 1),
                () -> gm.writeU32Release(4 * MiB + 64, 1), () -> gm.writeU64Release(4 * MiB + 64, 1)}) {
            ReadOnlySlotException e = assertThrows(ReadOnlySlotException.class, r::run);
            assertEquals(1, e.slotId());
            assertEquals(4 * MiB + 64, e.firstBadGpa());
        }
        assertEquals(0x55L, rom.segment().get(ValueLayout.JAVA_LONG, 64));
        assertEquals(0, gm.collectDirty(1).count());
    }

    @Test
    void theCheckedPathServesThemToo() {
        // A slot 1 TiB away makes the fast path's buckets 64 MiB or more, so no bucket lies wholly inside the
        // 1 MiB slots: every access below takes the checked path (slot lookup, then the slot's own view).
        try (HostRegion far = HostRegion.anonymous(4 * P).create()) {
            gm.addRam(2, 1L << 40, far);
            gm.writeU64Release(P + 8, 0x77);
            gm.writeU16Release(P + 2, 0x66);
            gm.writeU8Release(P + 1, 0x55);
            gm.writeU32Release((1L << 40) + 4, 0x44);
            assertEquals(0x77, gm.readU64Acquire(P + 8));
            assertEquals(0x66, gm.readU16Acquire(P + 2));
            assertEquals(0x55, gm.readU8Acquire(P + 1));
            assertEquals(0x44, gm.readU32Acquire((1L << 40) + 4));
            assertEquals(0x77, ram.segment().get(ValueLayout.JAVA_LONG, P + 8));
            assertEquals(0x44, far.segment().get(ValueLayout.JAVA_INT, 4));
            assertArrayEquals(new long[] {1}, gm.collectDirty(0).gfns());
            assertArrayEquals(new long[] {(1L << 40) / P}, gm.collectDirty(2).gfns());
            assertThrows(MisalignedAccessException.class, () -> gm.writeU32Release(P + 2, 1));
            assertThrows(ReadOnlySlotException.class, () -> gm.writeU32Release(4 * MiB, 1));
            assertThrows(PartialAccessException.class, () -> gm.readU64Acquire((1L << 40) + 4 * P));
            gm.removeRam(2);
        }
    }

    /**
     * A ring of 64 messages of 4 words, as a virtqueue's: the writer fills message m (plain u64 writes through
     * GuestMemory), then releases the count m; the reader acquires the count through a slice and must then see
     * every message up to it whole, then releases its own count, which the writer acquires before it reuses a
     * message's place. Nothing else orders the payload: a plain or opaque count would let the JIT (and arm64)
     * move the payload's accesses across it.
     */
    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void aReleasedIndexPublishesThePayloadWrittenBeforeIt() throws Exception {
        final int messages = 200_000, q = 64, words = 4;
        final long payload = P, seq = 2 * P, ack = 3 * P; // separate pages (and cache lines)
        GuestSlice ring = gm.slice(0, 4 * P);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
        Thread writer = new Thread(() -> {
            try {
                for (int m = 1; m <= messages; m++) {
                    for (int spins = 0; m - gm.readU32Acquire(ack) > q; spins++) {
                        if (System.nanoTime() > deadline) throw new AssertionError("writer waited too long at " + m);
                        pause(spins);
                    }
                    long at = payload + 8L * words * ((m - 1) % q);
                    for (int w = 0; w < words; w++) gm.writeU64(at + 8L * w, (long) m * 1_000 + w);
                    gm.writeU32Release(seq, m);
                }
            } catch (Throwable t) {
                failure.set(t);
            }
        }, "writer");
        writer.start();
        int consumed = 0;
        try {
            for (int spins = 0; consumed < messages && failure.get() == null; spins++) {
                int published = ring.readU32Acquire(seq);
                if (published == consumed) {
                    if (System.nanoTime() > deadline) fail("reader waited too long at " + consumed);
                    pause(spins);
                    continue;
                }
                spins = 0;
                while (consumed < published) {
                    int m = consumed + 1;
                    long at = payload + 8L * words * ((m - 1) % q);
                    for (int w = 0; w < words; w++) {
                        long v = ring.readU64(at + 8L * w);
                        if (v != (long) m * 1_000 + w) fail("message " + m + " word " + w + ": " + v + " (a stale payload)");
                    }
                    consumed = m;
                }
                ring.writeU32Release(ack, consumed);
            }
        } finally {
            writer.join(TimeUnit.SECONDS.toMillis(30));
        }
        if (failure.get() != null) throw new AssertionError("writer failed", failure.get());
        assertFalse(writer.isAlive());
        assertEquals(messages, consumed);
        assertEquals(messages, ram.segment().get(ValueLayout.JAVA_INT, seq));
        assertArrayEquals(new long[] {payload / P, seq / P, ack / P}, gm.collectDirty(0).gfns());
    }

    /** Spins a while, then yields: two cores shared with other work must not starve the other side. */
    private static void pause(int spins) {
        if (spins < 256) Thread.onSpinWait();
        else Thread.yield();
    }
}
