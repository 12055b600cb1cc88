package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.access.PrivateMemoryException;
import io.guestmem.gmem.GuestMemfdRegion;
import io.guestmem.host.HostRegion;
import io.guestmem.snapshot.Snapshot;
import io.guestmem.snapshot.SnapshotFormatException;
import io.guestmem.snapshot.SnapshotRestore;
import io.guestmem.snapshot.SnapshotWriter;
import io.guestmem.sys.Posix;
import io.guestmem.vm.VmMemory;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Snapshots that are not what they must be, and writes that fail: each is refused with the file offset (or the
 * call) at fault, and leaves nothing behind: no mapping, fd, lock or pool (the leak guard, around each case),
 * no file under the final name and no temporary file.
 */
class SnapshotBadInputTest {
    static final long P = Posix.PAGE_SIZE, MiB = 1 << 20;
    @TempDir static Path dir;
    static Path good;

    /** A snapshot of anon + memfd + hugetlb-less THP memory with data, zero and untouched pages. */
    @BeforeAll
    static void writeOne() throws Exception {
        good = dir.resolve("good.snap");
        try (VmMemory vm = new VmMemory(); HostRegion a = HostRegion.anonymous(2 * MiB).create();
             HostRegion m = HostRegion.memfd(2 * MiB).create()) {
            vm.memory().addRam(0, 0, a);
            vm.memory().addRam(1, 16 * MiB, m);
            Random rnd = new Random(9);
            for (int i = 0; i < 20; i++) {
                byte[] b = new byte[(int) P];
                rnd.nextBytes(b);
                vm.memory().write((i % 2 == 0 ? 0 : 16 * MiB) + (rnd.nextInt((int) (2 * MiB / P))) * P, b);
            }
            vm.memory().write(5 * P, new byte[(int) P]); // a zero page
            SnapshotWriter.write(vm.memory(), good);
        }
    }

    /** A copy of the good snapshot changed by {@code edit}; restoring it must fail at {@code offset}, leaking nothing. */
    static SnapshotFormatException refused(String name, Edit edit) throws Exception {
        Path bad = dir.resolve(name);
        Files.copy(good, bad, StandardCopyOption.REPLACE_EXISTING);
        try (RandomAccessFile f = new RandomAccessFile(bad.toFile(), "rw")) {
            edit.apply(f);
        }
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        SnapshotFormatException e = assertThrows(SnapshotFormatException.class, () -> {
            try (Snapshot s = Snapshot.open(bad)) {
                SnapshotRestore.eager(List.of(s), null).close();
            }
        });
        System.out.println("refused " + name + ": " + e.getMessage());
        LeakGuard.verify(before, "a refused restore of " + name);
        return e;
    }

    interface Edit {
        void apply(RandomAccessFile f) throws Exception;
    }

    static long firstDataOffset() throws Exception {
        try (Snapshot s = Snapshot.open(good)) {
            return s.runs().stream().filter(r -> !r.zero()).findFirst().orElseThrow().dataOffset();
        }
    }

    static long lastDataOffset() throws Exception {
        try (Snapshot s = Snapshot.open(good)) {
            return s.runs().stream().filter(r -> !r.zero()).reduce((x, y) -> y).orElseThrow().dataOffset();
        }
    }

    @Test
    void aFlippedPageByteIsRefusedAtItsRecordAndTheFreshMemoryIsReleased() throws Exception {
        long at = lastDataOffset(); // the last record: the restore has built everything and written the rest
        SnapshotFormatException e = refused("flipped.snap", f -> {
            f.seek(at + 100);
            int b = f.read();
            f.seek(at + 100);
            f.write(b ^ 0x40);
        });
        assertEquals(at, e.offset());
        assertTrue(e.getMessage().contains("checksum mismatch"), e.getMessage());
    }

    @Test
    void aTruncatedFileIsRefusedWhereItEnds() throws Exception {
        long size = Files.size(good);
        SnapshotFormatException e = refused("truncated.snap", f -> f.setLength(size - 100));
        assertTrue(e.getMessage().contains("truncated"), e.getMessage());
        assertTrue(e.offset() <= size - 100, e.getMessage());
        SnapshotFormatException mid = refused("half.snap", f -> f.setLength(firstDataOffset() + P / 2));
        assertEquals(firstDataOffset() + P / 2, mid.offset(), mid.getMessage());
    }

    @Test
    void aDamagedHeaderOrManifestIsRefusedAtItsBytes() throws Exception {
        assertEquals(0, refused("magic.snap", f -> { f.seek(0); f.write('X'); }).offset());
        assertEquals(60, refused("header.snap", f -> { f.seek(16); f.write(0x7f); }).offset());
        assertEquals(64, refused("manifest.snap", f -> { f.seek(64 + 8); f.write(0x01); }).offset());
        assertTrue(refused("empty.snap", f -> f.setLength(0)).getMessage().contains("truncated"));
        long end = Files.size(good);
        assertEquals(end, refused("trailing.snap", f -> { f.seek(end); f.write(0); }).offset(), "bytes after END");
    }

    /**
     * A write that fails midway (a private page of a guest_memfd stand-in cannot be read by the host) throws
     * the accessor's typed error and leaves no file under the final name, no temporary file, and an earlier
     * snapshot under that name untouched.
     */
    @Test
    void aWriteThatFailsMidwayLeavesNoFileAndKeepsAnEarlierOne() throws Exception {
        Path target = dir.resolve("target.snap");
        Files.copy(good, target, StandardCopyOption.REPLACE_EXISTING);
        byte[] earlier = Files.readAllBytes(target);
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        try (VmMemory vm = new VmMemory(); HostRegion a = HostRegion.anonymous(2 * MiB).create();
             GuestMemfdRegion g = vm.createGuestMemfd(8 * P)) {
            vm.memory().addRam(0, 0, a);
            vm.memory().writeU64(0, 42);
            vm.addGuestMemfd(1, 16 * MiB, g);
            vm.memory().writeU64(16 * MiB + 3 * P, 7);
            g.zapHostMapping(3 * P, P);
            assertTrue(g.toPrivate(3 * P, P).isComplete());
            PrivateMemoryException e = assertThrows(PrivateMemoryException.class, () -> SnapshotWriter.write(vm.memory(), target));
            System.out.println("refused write: " + e.getMessage());
        }
        assertArrayEquals(earlier, Files.readAllBytes(target), "the earlier snapshot under the name is untouched");
        try (Stream<Path> s = Files.list(dir)) {
            assertEquals(List.of(), s.filter(p -> p.getFileName().toString().contains(".tmp-")).toList(), "no temporary file");
        }
        LeakGuard.verify(before, "a failed snapshot write");
    }
}
