package io.guestmem.snapshot;

import static io.guestmem.snapshot.LazyRestoreGuestTest.ANON_GPA;
import static io.guestmem.snapshot.LazyRestoreGuestTest.CODE;
import static io.guestmem.snapshot.LazyRestoreGuestTest.DATA;
import static io.guestmem.snapshot.LazyRestoreGuestTest.MEMFD_GPA;
import static io.guestmem.snapshot.LazyRestoreGuestTest.T1;
import static io.guestmem.snapshot.LazyRestoreGuestTest.T2;
import static org.junit.jupiter.api.Assertions.*;

import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.KvmAvailable;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.sys.UnixSocket;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The page-fault handler in another process: a child JVM receives this VMM's userfaultfd and memfd over a unix
 * socket and serves a real KVM guest's faults from the snapshot; the guest finds every page's old value. And the
 * failures: a handler killed mid-restore leaves the missing pages failing (an error, not a hang), a layout that
 * is not the snapshot's is refused by the handler and leaves nothing mapped.
 */
class RemoteLazyRestoreTest {
    @TempDir Path dir;

    @BeforeAll
    static void kvm() {
        KvmAvailable.assume();
    }

    record Handler(Process process, CompletableFuture<String> output) {
        String waitForOutput() throws Exception {
            assertTrue(process.waitFor(120, TimeUnit.SECONDS), "the handler finished");
            return output.get(10, TimeUnit.SECONDS);
        }
    }

    private Handler handler(Path sock, Path snap, boolean prefetch) throws IOException {
        Process p = new ProcessBuilder(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--enable-native-access=ALL-UNNAMED", "-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path"),
                RemoteHandlerChild.class.getName(), sock.toString(), snap.toString(), Boolean.toString(prefetch))
                .redirectErrorStream(true).start();
        return new Handler(p, CompletableFuture.supplyAsync(() -> {
            try {
                return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            } catch (IOException e) {
                return e.toString();
            }
        }));
    }

    @ParameterizedTest(name = "prefetch={0}")
    @ValueSource(booleans = {false, true})
    void aHandlerInAnotherProcessServesARealGuest(boolean prefetch) throws Exception {
        GuestCpu g = GuestCpu.current();
        Path file = LazyRestoreGuestTest.snapshotOfAGuest(dir.resolve("guest.snap"));
        Path sock = dir.resolve("uffd.sock");
        SnapshotManifest layout;
        try (Snapshot s = Snapshot.open(file)) {
            layout = s.manifest();
        }
        Handler h;
        try (UnixSocket server = UnixSocket.listen(sock.toString()); KvmVm vm = KvmVm.open()) {
            h = handler(sock, file, prefetch);
            g.prepareVm(vm);
            try (RemoteLazyRestore lazy = RemoteLazyRestore.start(layout, vm, server.accept(Duration.ofSeconds(60)), Duration.ofSeconds(60))) {
                Vcpu cpu = vm.createVcpu(0);
                for (long gpa : new long[] {ANON_GPA, MEMFD_GPA}) {
                    List<VcpuExit> exits = LazyRestoreGuestTest.run(lazy.memory(), cpu,
                            g.checkAndRewriteEveryPage(CODE, gpa, LazyRestoreGuestTest.pages(), T1, T2));
                    assertEquals(0L, g.reported(exits).orElseThrow(() -> new AssertionError("no report in " + exits)),
                            g.arch() + ": pages the guest found without the snapshot's bytes, slot at 0x" + Long.toHexString(gpa));
                }
                if (prefetch) {
                    assertTrue(lazy.awaitComplete(Duration.ofSeconds(60)), "the handler reported COMPLETE: " + lazy.failure());
                    LazyRestoreStats s = lazy.handlerStats();
                    System.out.println("remote lazy restore (prefetch): handler " + s + ", accessor fetches " + lazy.accessorFetches());
                    assertEquals(0, s.failures());
                }
                for (long i = 0; i < LazyRestoreGuestTest.pages(); i++) {
                    for (long base : new long[] {ANON_GPA, MEMFD_GPA}) {
                        long gpa = base + i * GuestCpu.GUEST_PAGE;
                        assertEquals(GuestCpu.pageValue(gpa >>> 12, T2), lazy.memory().memory().readU64(gpa), "gpa 0x" + Long.toHexString(gpa));
                    }
                }
                assertNull(lazy.failure());
            }
        }
        String out = h.waitForOutput();
        System.out.println("handler: " + out.trim());
        assertEquals(0, h.process().exitValue(), out);
        String served = out.lines().filter(l -> l.startsWith("SERVED")).findFirst().orElseThrow(() -> new AssertionError(out));
        // without prefetch every page reached the guest through a fault (KVM's GUP) or an accessor the handler served
        if (!prefetch) assertFalse(served.contains("faultsServed=0,"), "the guest's faults reached the other process: " + served);
    }

    @Test
    void aCorruptRecordStaysRefusedAfterTheHandlerReportsComplete() throws Exception {
        Path file = LazyRestoreGuestTest.snapshotOfAGuest(dir.resolve("guest.snap"));
        Path sock = dir.resolve("uffd.sock");
        SnapshotManifest layout;
        long at, badGpa;
        try (Snapshot s = Snapshot.open(file)) {
            layout = s.manifest();
            Snapshot.Run run = s.runs().stream().filter(r -> !r.zero() && r.slotIndex() == 1).findFirst().orElseThrow();
            at = run.dataOffset();
            badGpa = ANON_GPA + run.firstPage() * layout.pageSize(); // slot 1 (manifest order) is the anon slot
        }
        try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(file.toFile(), "rw")) {
            f.seek(at + 5);
            int b = f.read();
            f.seek(at + 5);
            f.write(b ^ 2);
        }
        try (UnixSocket server = UnixSocket.listen(sock.toString()); KvmVm vm = KvmVm.open()) {
            Handler h = handler(sock, file, true);
            try (RemoteLazyRestore lazy = RemoteLazyRestore.start(layout, vm, server.accept(Duration.ofSeconds(60)), Duration.ofSeconds(60))) {
                assertTrue(lazy.awaitComplete(Duration.ofSeconds(60)), "the handler reported COMPLETE: " + lazy.failure());
                assertNotNull(lazy.failure(), "the handler reported the block it poisoned");
                // complete, yet the poisoned block is refused by the accessor (a touch would be a SIGBUS)
                LazyRestoreException e = assertThrows(LazyRestoreException.class, () -> lazy.memory().memory().readU64(badGpa));
                System.out.println("after COMPLETE with a poisoned block: " + e.getMessage());
                long last = MEMFD_GPA + DATA - GuestCpu.GUEST_PAGE;
                assertEquals(GuestCpu.pageValue(last >>> 12, T1), lazy.memory().memory().readU64(last), "the other slot is whole");
            }
            h.waitForOutput();
        }
    }

    @Test
    void aHandlerKilledMidRestoreLeavesMissingPagesFailingNotHanging() throws Exception {
        Path file = LazyRestoreGuestTest.snapshotOfAGuest(dir.resolve("guest.snap"));
        Path sock = dir.resolve("uffd.sock");
        SnapshotManifest layout;
        try (Snapshot s = Snapshot.open(file)) {
            layout = s.manifest();
        }
        try (UnixSocket server = UnixSocket.listen(sock.toString()); KvmVm vm = KvmVm.open()) {
            Handler h = handler(sock, file, false);
            try (RemoteLazyRestore lazy = RemoteLazyRestore.start(layout, vm, server.accept(Duration.ofSeconds(60)), Duration.ofSeconds(60))) {
                assertEquals(GuestCpu.pageValue(ANON_GPA >>> 12, T1), lazy.memory().memory().readU64(ANON_GPA), "served while alive");
                h.process().destroyForcibly().waitFor();
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (!lazy.ended() && System.nanoTime() < deadline) Thread.sleep(10);
                assertTrue(lazy.ended(), "the handler's end was seen");
                long far = MEMFD_GPA + DATA - GuestCpu.GUEST_PAGE; // a block nothing touched yet
                LazyRestoreException e = assertThrows(LazyRestoreException.class, () -> lazy.memory().memory().readU64(far));
                System.out.println("after the handler died: " + e.getMessage());
                assertTrue(lazy.failure().contains("went away"), lazy.failure());
                assertEquals(GuestCpu.pageValue(ANON_GPA >>> 12, T1), lazy.memory().memory().readU64(ANON_GPA), "what arrived stays");
            }
        }
    }

    @Test
    void aLayoutThatIsNotTheSnapshotsIsRefusedAndNothingStaysMapped() throws Exception {
        Path file = LazyRestoreGuestTest.snapshotOfAGuest(dir.resolve("guest.snap"));
        Path sock = dir.resolve("uffd.sock");
        SnapshotManifest m;
        try (Snapshot s = Snapshot.open(file)) {
            m = s.manifest();
        }
        List<SnapshotSlot> moved = new ArrayList<>(m.slots());
        SnapshotSlot a = moved.get(1);
        moved.set(1, new SnapshotSlot(a.slotId(), a.addressSpace(), a.gpa() + DATA * 2, a.size(), a.hostPageSize(),
                a.memslotFlags(), a.backingLabel(), a.dataPages(), a.zeroPages()));
        SnapshotManifest wrong = new SnapshotManifest(m.id(), m.baseId(), m.pageSize(), m.createdMillis(), moved);
        try (UnixSocket server = UnixSocket.listen(sock.toString()); KvmVm vm = KvmVm.open()) {
            Handler h = handler(sock, file, true);
            UnixSocket conn = server.accept(Duration.ofSeconds(60));
            SnapshotLayoutException e = assertThrows(SnapshotLayoutException.class,
                    () -> RemoteLazyRestore.start(wrong, vm, conn, Duration.ofSeconds(60)));
            System.out.println("refused: " + e.getMessage());
            assertTrue(e.getMessage().contains("refused"), e.getMessage());
            assertFalse(conn.isOpen(), "the socket was closed");
            // that no region of the refused restore is left mapped is the leak guard's to check: RestoreLeakTest
            String out = h.waitForOutput();
            assertEquals(3, h.process().exitValue(), out);
            assertTrue(out.contains("REFUSED"), out);
        }
    }
}
