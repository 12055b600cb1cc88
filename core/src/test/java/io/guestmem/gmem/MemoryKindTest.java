package io.guestmem.gmem;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.host.Pfnmap;
import io.guestmem.host.Prefault;
import io.guestmem.sys.Posix;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/**
 * {@link MemoryKind#expectedFor}, the one mapping from how a region was created to what the kernel shows it
 * to be, held against the kernel's own view ({@link MemoryClassifier#classify}: maps and smaps) for a region
 * of every backing this machine gives without raising a hugetlb pool.
 */
class MemoryKindTest {
    static final long P = Posix.PAGE_SIZE;

    @Test
    void whatTheKernelShowsIsWhatTheBackingMakes() {
        List<HostRegion> regions = new ArrayList<>();
        try {
            regions.add(HostRegion.anonymous(4 * P).prefault(Prefault.Mode.WRITE).create());
            regions.add(HostRegion.anonymousShared(4 * P).prefault(Prefault.Mode.WRITE).create());
            regions.add(HostRegion.thp(Math.max(P, io.guestmem.host.HugePagePools.thpSize())).create());
            regions.add(HostRegion.memfd(4 * P).create());
            regions.add(HostRegion.secret(4 * P).prefault(Prefault.Mode.WRITE).create());
            Optional<String> noPfnmap = Pfnmap.unavailableReason();
            if (noPfnmap.isEmpty()) regions.add(HostRegion.perfRing(8).create());
            else System.out.println("no pfnmap region here: " + noPfnmap.get());
            for (HostRegion r : regions) {
                MemoryKind want = MemoryKind.expectedFor(r.backing()).orElseThrow();
                MemoryClass c = MemoryClassifier.classify(r.address());
                System.out.println(r.backing() + " -> " + c.kind() + " (" + c.vmaName() + ")");
                assertEquals(want, c.kind(), r + ": " + c.why());
            }
        } finally {
            regions.forEach(HostRegion::close);
        }
    }

    @Test
    void theVmaNameAloneTellsSecretAndGuestMemfd() {
        assertEquals(Optional.of(MemoryKind.SECRET_MEM), MemoryKind.ofName("/secretmem (deleted)"));
        assertEquals(Optional.of(MemoryKind.SECRET_MEM), MemoryKind.ofName("[secretmem]"));
        assertEquals(Optional.of(MemoryKind.GUEST_MEMFD), MemoryKind.ofName("anon_inode:[kvm-gmem]"));
        // its own inode since "KVM: guest_memfd: Use guest mem inodes instead of anonymous inodes" (Debian 7.3)
        assertEquals(Optional.of(MemoryKind.GUEST_MEMFD), MemoryKind.ofName("/[kvm-gmem] (deleted)"));
        assertEquals(Optional.empty(), MemoryKind.ofName("/[kvm-gmem]x"));
        assertEquals(Optional.empty(), MemoryKind.ofName("anon_inode:[perf_event]"));
        assertEquals(Optional.empty(), MemoryKind.ofName("/memfd:guestmem (deleted)"));
        assertEquals(Optional.empty(), MemoryKind.ofName(""));
        assertEquals(Optional.empty(), MemoryKind.ofName(null));
    }

    @Test
    void everyBackingButACallersFdHasAnExpectedKind() {
        for (Backing b : Backing.values())
            assertEquals(b != Backing.FD, MemoryKind.expectedFor(b).isPresent(), b.toString());
        assertEquals(Optional.of(MemoryKind.GUEST_MEMFD), MemoryKind.expectedFor(Backing.GUEST_MEMFD));
        assertEquals(Optional.of(MemoryKind.ORDINARY), MemoryKind.expectedFor(Backing.HUGETLB_2M));
    }
}
