package io.guestmem.access;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.kvm.KvmAvailable;
import io.guestmem.kvm.KvmGuestMemfd;
import io.guestmem.kvm.KvmVm;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/**
 * A GUEST_MEMFD slot over a real guest_memfd (MMAP | INIT_SHARED, so the test itself can never SIGBUS):
 * the policy is asked before every page of it is touched, refusals are typed errors, and slots without
 * GUEST_MEMFD never ask (their accesses stay on the fast path).
 */
class PrivateMemoryTest {
    static final long MiB = 1 << 20;
    static final long P = io.guestmem.sys.Posix.PAGE_SIZE;

    @Test
    void privatePagesOfAGuestMemfdSlotAreRefusedBeforeAnyAccess() {
        KvmAvailable.assume();
        try (KvmVm vm = KvmVm.open()) {
            assumeTrue(vm.capabilities().guestMemfd(), "this KVM has no guest_memfd");
            KvmGuestMemfd gmem = vm.createGuestMemfd(2 * MiB);
            assumeTrue(gmem.mmapShared(), "this KVM cannot mmap guest_memfd (no MMAP|INIT_SHARED): host access impossible");
            Set<Long> privateGfns = ConcurrentHashMap.newKeySet();
            AtomicLong asked = new AtomicLong();
            PageAccessPolicy policy = (slot, gfn, write) -> {
                asked.incrementAndGet();
                assertTrue(slot.guestMemfd(), "asked about a normal slot");
                return !privateGfns.contains(gfn);
            };
            try (HostRegion shared = HostRegion.ofFd(gmem.fd(), 0, 2 * MiB, Backing.GUEST_MEMFD).create();
                 HostRegion plain = HostRegion.anonymous(MiB).create()) {
                Memslots slots = new Memslots();
                GuestMemory gm = new GuestMemory(slots, 0, policy);
                gm.addRam(0, 0, plain);
                gm.register(shared);
                long base = 0x4000_0000L;
                slots.setMemslot(0, 1, Memslot.GUEST_MEMFD, base, 2 * MiB, shared.address(), gmem.fd(), 0);

                gm.writeU64(8, 1);
                gm.read(0, new byte[8192]);
                assertEquals(0, asked.get(), "normal slots never consult the policy");

                long g0 = base / P;
                privateGfns.add(g0 + 2);
                gm.writeU64(base + 8, 0x77);
                assertEquals(0x77, gm.readU64Volatile(base + 8));
                assertTrue(asked.get() > 0);
                // a write running from shared page 1 into private page 2
                byte[] data = new byte[(int) (2 * P)];
                java.util.Arrays.fill(data, (byte) 9);
                PrivateMemoryException e = assertThrows(PrivateMemoryException.class, () -> gm.write(base + P, data));
                assertEquals(base + 2 * P, e.firstBadGpa());
                assertEquals(P, e.bytesDone());
                assertEquals(1, e.slotId());
                assertEquals(g0 + 2, e.gfn());
                assertEquals(GuestMemoryException.Reason.PRIVATE, e.reason());
                assertEquals(9, shared.segment().get(java.lang.foreign.ValueLayout.JAVA_BYTE, P + 5), "page 1 was written");
                assertEquals(0, shared.segment().get(java.lang.foreign.ValueLayout.JAVA_BYTE, 2 * P), "page 2 was not");
                assertThrows(PrivateMemoryException.class, () -> gm.readU32(base + 2 * P + 4));
                assertThrows(PrivateMemoryException.class, () -> gm.readU64Volatile(base + 2 * P));
                assertThrows(PrivateMemoryException.class, () -> gm.getAndAddU32(base + 2 * P, 1));
                assertThrows(PrivateMemoryException.class, () -> gm.slice(base, 3 * P), "a slice over a private page");
                GuestSlice ok = gm.slice(base, 2 * P);
                assertEquals(0x77, ok.readU64(8));
                assertThrows(PrivateMemoryException.class, () -> gm.writeTo(base, java.nio.channels.Channels.newChannel(new java.io.ByteArrayOutputStream()), 3 * P));
                // converted back to shared: accessible again
                privateGfns.clear();
                assertEquals(0, gm.readU64(base + 2 * P));
                assertEquals(1, gm.sharedRegions().stream().filter(r -> r.slotId() == 1 && r.backing() == Backing.GUEST_MEMFD).count(),
                        "a guest_memfd with MMAP is shareable by fd");
                gm.close();
            }
        }
    }
}
