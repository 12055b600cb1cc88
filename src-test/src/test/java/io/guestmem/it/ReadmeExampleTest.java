package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.access.DirtyPages;
import io.guestmem.access.GuestMemory;
import io.guestmem.access.GuestBuffers;
import io.guestmem.access.GuestSlice;
import io.guestmem.host.HostRegion;
import io.guestmem.memslot.Memslots;
import io.guestmem.sys.FileFd;
import io.guestmem.sys.Posix;
import io.guestmem.virtio.VirtqDescriptor;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/**
 * The VMM-side example of the README, compiled and run. The code between the {@code snippet:vmm} comments
 * must be byte-identical (after removing the common indentation) to the java block between the
 * {@code <!-- snippet:vmm -->} markers of README.md, so the README never shows code that does not compile or
 * does not work.
 */
@org.junit.jupiter.api.extension.ExtendWith(LeakGuard.class)
class ReadmeExampleTest {

    @Test
    void theReadmeExampleRunsOnRealMemory() {
        List<long[]> sent = new ArrayList<>();
        int[] seen = new int[4];
        // snippet:vmm
        try (HostRegion ram = HostRegion.memfd(64 << 20).create()) {   // 64 MiB of real memory, shareable by fd
            Memslots memslots = new Memslots();
            GuestMemory mem = new GuestMemory(memslots);
            mem.addRam(0, 0x0000_0000L, ram, 0, 48 << 20, 0);           // 48 MiB at gpa 0
            mem.addRam(1, 0x1_0000_0000L, ram, 48 << 20, 16 << 20, 0);  // 16 MiB above 4 GiB

            byte[] kernel = new byte[3 << 20];                           // a boot image (here: zeros and a magic)
            kernel[0x202] = 'H'; kernel[0x203] = 'd'; kernel[0x204] = 'r'; kernel[0x205] = 'S';
            mem.write(0x10_0000, kernel);                                // load it at 1 MiB

            // The guest offers descriptor 5 on a virtqueue: descriptor table at 0x6000, avail ring at 0x7000
            // (flags, idx, ring[256]); the entry first, then the index with release ordering.
            new VirtqDescriptor(0x50_0000, 512, VirtqDescriptor.F_WRITE, 0).write(mem, VirtqDescriptor.gpaOf(0x6000, 5));
            mem.writeU16(0x7004, 5);
            mem.writeU16Release(0x7002, 1);

            // The device walks the queue under a pin: the memory layout cannot change until the walk is done.
            try (GuestMemory.Pin walk = mem.pin()) {
                int availIdx = mem.readU16Acquire(0x7002);               // acquire: the entry is visible after the index
                int head = mem.readU16(0x7004 + 2 * ((availIdx - 1) % 256));
                VirtqDescriptor desc = VirtqDescriptor.read(mem, VirtqDescriptor.gpaOf(0x6000, head));
                GuestSlice buffer = mem.slice(desc.addr(), desc.len());  // zero-copy, dirty-tracked, dies with its slot
                buffer.fill((byte) 0x5a);                                // the device writes the guest's buffer
                // A receive into a chain of two buffers, one in each slot: one readv(2), its pages marked dirty.
                GuestBuffers chain = mem.buffers(new long[] {0x58_0000, 0x1_0000_0000L}, new long[] {1024, 1024}, true);
                try (FileFd packets = FileFd.open("/dev/urandom", Posix.O_RDONLY)) {
                    seen[3] = (int) mem.readv(packets.fd(), chain);
                }
                seen[0] = availIdx; seen[1] = head; seen[2] = desc.len();
            }

            // Live migration: the pages written through the API since the last round.
            for (DirtyPages d : mem.pagesToSend(slot -> null)) {
                sent.add(d.gfns());                                      // send these pages
            }
            mem.close();
        }
        // /snippet:vmm
        assertArrayEquals(new int[] {1, 5, 512, 2048}, seen);
        long page = io.guestmem.sys.Posix.PAGE_SIZE; // gfns are host pages: 4 KiB on x86-64, 16 KiB on a 16K kernel
        java.util.TreeSet<Long> expected = new java.util.TreeSet<>();
        for (long g = 0x10_0000 / page; g < 0x40_0000 / page; g++) expected.add(g); // the 3 MiB image
        expected.add(0x6000 / page);                                                   // the descriptor
        expected.add(0x7000 / page);                                                   // the avail ring
        expected.add(0x50_0000 / page);                                                // the buffer, through the slice
        expected.add(0x58_0000 / page);                                                // the chain's first buffer
        assertEquals(expected, Arrays.stream(sent.get(0)).boxed().collect(Collectors.toCollection(java.util.TreeSet::new)),
                "the image's pages, the descriptor's, the ring's and the buffer's: " + Arrays.toString(sent.get(0)));
        assertEquals(expected.size(), sent.get(0).length, "each page once");
        assertArrayEquals(new long[] {0x1_0000_0000L / page}, sent.get(1), "slot 1: the chain's second buffer");
    }

    @Test
    void theReadmeShowsExactlyThisCode() throws Exception {
        Path src = Path.of("src/test/java/io/guestmem/it/ReadmeExampleTest.java");
        List<String> lines = Files.readAllLines(src);
        int from = indexOf(lines, "// snippet:vmm", 0), to = indexOf(lines, "// /snippet:vmm", from);
        String code = dedent(lines.subList(from + 1, to));

        Path readme = Path.of("../README.md");
        List<String> doc = Files.readAllLines(readme);
        int m0 = indexOf(doc, "<!-- snippet:vmm -->", 0), m1 = indexOf(doc, "<!-- /snippet:vmm -->", m0);
        int f0 = indexOf(doc, "```java", m0), f1 = indexOf(doc, "```", f0 + 1);
        assertTrue(f1 < m1, "one java block between the markers of " + readme);
        assertEquals(code, String.join("\n", doc.subList(f0 + 1, f1)), readme + " differs from the tested code");
    }

    private static int indexOf(List<String> lines, String marker, int from) {
        for (int i = from; i < lines.size(); i++) if (lines.get(i).strip().equals(marker)) return i;
        throw new AssertionError("marker " + marker + " not found");
    }

    private static String dedent(List<String> lines) {
        int indent = lines.stream().filter(l -> !l.isBlank()).mapToInt(l -> l.length() - l.stripLeading().length())
                .min().orElse(0);
        return lines.stream().map(l -> l.isBlank() ? "" : l.substring(indent)).collect(Collectors.joining("\n"));
    }
}
