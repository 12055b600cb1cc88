package io.guestmem.access;

import static io.guestmem.access.Concurrently.awaitState;
import static io.guestmem.access.Concurrently.start;
import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Pins: a device walking a descriptor chain under {@link GuestMemory#pin()} sees one layout while another
 * thread removes the slot the chain points into; the removal waits for the pin or, past the drain timeout,
 * is refused and changes nothing. Every wait is bounded ({@link Concurrently}).
 */
class PinTest {
    static final long MiB = 1 << 20;
    static final long SLOT1 = MiB;
    static final long CHAIN = 0x1000; // four virtio-style descriptors (addr u64, len u32, flags u16, next u16) in slot 0
    HostRegion a, b;
    Memslots slots;
    GuestMemory gm;

    @BeforeEach
    void setUp() {
        a = HostRegion.anonymous(MiB).create();
        b = HostRegion.anonymous(MiB).create();
        slots = new Memslots();
        gm = new GuestMemory(slots);
        gm.addRam(0, 0, a);
        gm.addRam(1, SLOT1, b);
        for (int d = 0; d < 4; d++) {
            long desc = CHAIN + 16L * d, buf = SLOT1 + 0x1000L * (d + 1);
            gm.writeU64(desc, buf);
            gm.writeU32(desc + 8, 512);
            gm.writeU16(desc + 12, d < 3 ? 1 : 0); // NEXT
            gm.writeU16(desc + 14, d + 1);
            gm.fill(buf, 512, (byte) (0x40 + d));
        }
    }

    @AfterEach
    void tearDown() {
        gm.setDrainTimeout(Duration.ofSeconds(5));
        gm.close();
        a.close();
        b.close();
    }

    @Test
    void aPinnedWalkSeesOneLayoutWhileAnotherThreadRemovesTheSlotItPointsInto() throws Exception {
        gm.setDrainTimeout(Duration.ofSeconds(Concurrently.LIMIT_S));
        CountDownLatch walking = new CountDownLatch(1), removalPending = new CountDownLatch(1);
        AtomicLong pinClosedAt = new AtomicLong();
        Concurrently.Call<Long> walker = start("walker", () -> {
            long sum = 0;
            GuestMemory.Pin pin = gm.pin();
            try {
                long generation = gm.memslotSet().generation();
                int d = 0;
                byte[] buf = new byte[512];
                while (true) {
                    long desc = CHAIN + 16L * d;
                    long addr = gm.readU64(desc);
                    int len = gm.readU32(desc + 8);
                    if (d == 0) {
                        walking.countDown();
                        assertTrue(removalPending.await(Concurrently.LIMIT_S, TimeUnit.SECONDS));
                    }
                    gm.read(addr, buf, 0, len); // the slot is being removed right now: still there for us
                    for (byte x : buf) assertEquals((byte) (0x40 + d), x);
                    sum += len;
                    if ((gm.readU16(desc + 12) & 1) == 0) break;
                    d = gm.readU16(desc + 14);
                }
                assertEquals(generation, gm.memslotSet().generation(), "one layout from the first access to the last");
            } finally {
                pinClosedAt.set(System.nanoTime());
                pin.close();
            }
            return sum;
        });
        assertTrue(walking.await(Concurrently.LIMIT_S, TimeUnit.SECONDS));
        Concurrently.Call<Long> remover = start("remover", () -> {
            gm.removeRam(1);
            return System.nanoTime();
        });
        awaitState(remover.thread(), Thread.State.TIMED_WAITING); // waiting for the pin
        assertNotNull(slots.current().byId(1));
        removalPending.countDown();
        assertEquals(4 * 512, walker.get());
        long removedAt = remover.get();
        assertTrue(pinClosedAt.get() != 0 && pinClosedAt.get() <= removedAt, "the removal went through after the pin closed");
        assertEquals(GuestMemoryException.Reason.NOT_RAM,
                assertThrows(PartialAccessException.class, () -> gm.readU8(SLOT1 + 0x1000)).reason());
    }

    @Test
    void aPinOutlivingTheTimeoutVetoesLayoutChangesButNotAFlagsOnlyChange() throws Exception {
        gm.setDrainTimeout(Duration.ofMillis(200));
        long generation = slots.generation();
        try (HostRegion c = HostRegion.anonymous(MiB).create()) {
            gm.register(c);
            GuestMemory.Pin pin = gm.pin();
            // another thread's removal
            SlotBusyException e = start("remover", () -> {
                gm.removeRam(1);
                return null;
            }).failure(SlotBusyException.class);
            assertEquals(1, e.pins());
            assertEquals(0, e.transfers());
            assertTrue(e.slotIds().isEmpty(), "no transfer held slot 1, the pin held the layout");
            assertTrue(e.getMessage().startsWith("EBUSY from setMemslot(as 0 slot 1) DELETE: 1 pin is open after waiting 200 ms"),
                    e.getMessage());
            // the pinning thread's own changes: no deadlock, the bounded wait ends in the same exception
            SlotBusyException own = assertThrows(SlotBusyException.class, () -> gm.addRam(2, 4 * MiB, c));
            assertTrue(own.getMessage().contains("A pin or transfer of the thread making this change cannot end"), own.getMessage());
            assertThrows(SlotBusyException.class, () -> slots.setMemslot(0, 1, 0, 8 * MiB, MiB, b.address()), "a move");
            SlotBusyException region = assertThrows(SlotBusyException.class, b::close, "the close of a region backing a slot");
            assertEquals(1, region.pins());
            assertTrue(b.isOpen());
            assertEquals(generation, slots.generation(), "nothing was published");
            assertNull(slots.current().byId(2));
            assertEquals(0x40, gm.readU8(SLOT1 + 0x1000));
            // dirty logging on and off changes no gpa: allowed under the pin, at once
            slots.setMemslot(0, 1, Memslot.LOG_DIRTY_PAGES, SLOT1, MiB, b.address());
            assertEquals(generation + 1, slots.generation());
            pin.close();
            gm.addRam(2, 4 * MiB, c);
            gm.removeRam(1);
            gm.removeRam(2);
        }
    }

    @Test
    void aPinOpenedWhileAChangeIsPendingWaitsForItsOutcome() throws Exception {
        gm.setDrainTimeout(Duration.ofSeconds(Concurrently.LIMIT_S));
        GuestMemory.Pin first = gm.pin();
        Concurrently.Call<Void> remover = start("remover", () -> {
            gm.removeRam(1);
            return null;
        });
        awaitState(remover.thread(), Thread.State.TIMED_WAITING);
        Concurrently.Call<Boolean> second = start("second pin", () -> {
            try (GuestMemory.Pin p = gm.pin()) {
                return gm.memslotSet().byId(1) == null;
            }
        });
        awaitState(second.thread(), Thread.State.WAITING); // for the removal's outcome
        assertFalse(remover.isDone());
        first.close();
        remover.get();
        assertTrue(second.get(), "the second pin opened on the layout after the removal");
    }

    @Test
    void aPinClosesOnceNestsAndAClosedMemoryGivesNone() {
        GuestMemory.Pin p = gm.pin();
        p.close();
        IllegalStateException twice = assertThrows(IllegalStateException.class, p::close);
        assertTrue(twice.getMessage().contains("close()"), twice.getMessage());
        try (GuestMemory.Pin outer = gm.pin(); GuestMemory.Pin inner = gm.pin()) {
            assertEquals(SLOT1 + 0x1000, gm.readU64(CHAIN));
        }
        // with no wait allowed, a count left behind (the second close, the nested pins) would veto this
        gm.setDrainTimeout(Duration.ZERO);
        gm.removeRam(1);
        assertNull(slots.current().byId(1));
        gm.close();
        assertThrows(IllegalStateException.class, gm::pin);
    }
}
