package io.guestmem.cli;

import io.guestmem.access.GuestMemory;
import io.guestmem.access.RamSlot;
import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.KvmVm;
import io.guestmem.migration.MigrationDestination;
import io.guestmem.migration.MigrationStats;
import io.guestmem.snapshot.RestoredMemory;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/**
 * {@code guestmem migrate-destination SOCKET}: the second process of {@code demo --migrate} (hidden: the demo
 * starts it). Connects to the source's unix socket, receives the memory into a new KVM VM
 * ({@link MigrationDestination}), then runs the guest there: for each data slot it checks every page for the
 * value the source's guest left (the tag the source stored at {@link DemoGuest#STATE_GPA}) and writes a new one,
 * and the host reads the new values back. Prints one {@link Result} as JSON on stdout; the source judges it.
 */
@Command(name = "migrate-destination", hidden = true,
        description = "The destination process of 'demo --migrate' (started by the demo).")
final class MigrateDestinationCommand implements Callable<Integer> {

    /** What the destination found, as the demo's source process reads it. */
    record Result(long pid, int rounds, long pagesReceived, long bytesReceived, double receiveMs, long checksumAgree,
                  long checksumChecked, int tag, long guestPages, long guestWrong, long hostWrong) {}

    @Spec
    CommandSpec spec;

    @Parameters(index = "0", paramLabel = "SOCKET", description = "The source's unix socket.")
    Path socket;

    @Override
    public Integer call() throws IOException {
        GuestCpu g = GuestCpu.current();
        Result result;
        try (KvmVm vm = KvmVm.open(); SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            g.prepareVm(vm);
            ch.connect(UnixDomainSocketAddress.of(socket));
            MigrationDestination.Received got = MigrationDestination.receive(ch, vm);
            try (RestoredMemory restored = got.memory()) {
                if (got.postCopy() != null) throw new IllegalStateException("the source asked for post-copy, which the demo does not use");
                GuestMemory mem = restored.memory().memory();
                long pageSize = mem.memslots().geometry().pageSize();
                int tag = (int) mem.readU64(DemoGuest.STATE_GPA);
                DemoGuest guest = new DemoGuest(mem, vm.createVcpu(0));
                long pages = 0, guestWrong = 0, hostWrong = 0;
                for (RamSlot r : mem.ramSlots()) {
                    if (r.slot().id() == DemoGuest.BOOT_SLOT) continue;
                    guestWrong += guest.checkAndRewrite(r.slot(), pageSize, tag, tag + 1);
                    hostWrong += guest.hostMismatches(r.slot(), pageSize, tag + 1);
                    pages += DemoGuest.guestPages(r.slot(), pageSize);
                }
                MigrationStats s = got.stats();
                result = new Result(ProcessHandle.current().pid(), s.rounds(), s.pagesSent(), s.bytesSent(), s.totalMs(),
                        s.agree(), s.checked(), tag, pages, guestWrong, hostWrong);
            }
        }
        PrintWriter out = spec.commandLine().getOut();
        Json.write(out, result);
        return 0;
    }
}
