package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** An O_TMPFILE file is invisible until linked, linking never replaces, and a dead writer leaves nothing. */
class UnlinkedFileTest {
    @TempDir
    Path dir;

    private List<Path> names() throws Exception {
        try (Stream<Path> s = Files.list(dir)) {
            return s.toList();
        }
    }

    @Test
    void aFileHasNoNameUntilLinkedAndThenHoldsWhatWasWritten() throws Exception {
        Path target = dir.resolve("snap");
        try (UnlinkedFile f = UnlinkedFile.create(dir)) {
            try (FileChannel ch = FileChannel.open(f.procPath(), StandardOpenOption.WRITE)) {
                ch.write(ByteBuffer.wrap("complete".getBytes(StandardCharsets.US_ASCII)));
                ch.force(true);
            }
            assertEquals(List.of(), names(), "nothing in the directory before the link");
            f.linkTo(target);
        }
        assertEquals(List.of(target), names());
        assertEquals("complete", Files.readString(target));
    }

    @Test
    void linkingOverAnExistingNameIsEexistAndKeepsIt() throws Exception {
        Path target = Files.writeString(dir.resolve("snap"), "earlier");
        try (UnlinkedFile f = UnlinkedFile.create(dir)) {
            SyscallException e = assertThrows(SyscallException.class, () -> f.linkTo(target));
            assertEquals("EEXIST", e.errnoName());
            assertTrue(e.getMessage().contains("linkat("), e.getMessage());
        }
        assertEquals("earlier", Files.readString(target));
        assertEquals(List.of(target), names());
    }

    @Test
    void aFileNeverLinkedIsFreedWithItsDescriptorAndUseAfterCloseThrows() throws Exception {
        long freeBefore = Files.getFileStore(dir).getUnallocatedSpace();
        UnlinkedFile f = UnlinkedFile.create(dir);
        try (FileChannel ch = FileChannel.open(f.procPath(), StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.allocate(8 << 20), 0);
            ch.force(true);
        }
        f.close();
        f.close();
        assertThrows(IllegalStateException.class, f::fd);
        assertEquals(List.of(), names());
        // the 8 MiB went with the last descriptor (allow the filesystem's own bookkeeping around it)
        long freeAfter = Files.getFileStore(dir).getUnallocatedSpace();
        assertTrue(freeBefore - freeAfter < (4 << 20), "space back: before " + freeBefore + ", after " + freeAfter);
    }

    @Test
    void aProcessKilledBeforeItLinksLeavesNothingInTheDirectory() throws Exception {
        // A shell cannot open an O_TMPFILE; a second JVM running this class's Child can.
        String javaBin = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Process p = new ProcessBuilder(javaBin, "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                Child.class.getName(), dir.toString()).redirectErrorStream(true).start();
        var out = new BufferedReader(new InputStreamReader(p.getInputStream()));
        String line = out.readLine();
        assertEquals("WRITTEN", line, "the child wrote its unnamed file");
        assertEquals(List.of(), names());
        p.destroyForcibly(); // SIGKILL
        assertTrue(p.waitFor(30, TimeUnit.SECONDS));
        assertEquals(List.of(), names(), "nothing left after the kill");
    }

    /** Writes an unnamed file in the directory given, then waits to be killed. */
    public static final class Child {
        public static void main(String[] args) throws Exception {
            UnlinkedFile f = UnlinkedFile.create(Path.of(args[0]));
            try (FileChannel ch = FileChannel.open(f.procPath(), StandardOpenOption.WRITE)) {
                ch.write(ByteBuffer.allocate(1 << 20));
            }
            System.out.println("WRITTEN");
            System.out.flush();
            Thread.sleep(600_000);
        }
    }
}
