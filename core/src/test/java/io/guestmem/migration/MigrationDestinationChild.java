package io.guestmem.migration;

import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.GuestProgram;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.vm.VmMemory;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * The destination process of {@link LiveMigrationTest}: connects to the source's socket, receives the memory
 * into a new KVM VM, then runs the guest there: for each data slot it checks every page for the value the
 * source's guest left (the tag the source wrote at {@link LiveMigrationTest#TAG_GPA}) and writes a new one.
 * Prints one line {@code RESULT rounds=.. pages=.. agree=.. checked=.. wrong=.. guestPages=..} (with post-copy,
 * once every page has arrived, and the page server's counts).
 */
public final class MigrationDestinationChild {
    public static void main(String[] args) throws Exception {
        GuestCpu g = GuestCpu.current();
        try (KvmVm vm = KvmVm.open(); SocketChannel ch = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            g.prepareVm(vm);
            ch.connect(UnixDomainSocketAddress.of(Path.of(args[0])));
            // post-copy: nothing pulled in the background until the guest has run, so its faults are what bring
            // the pages it needs (through KVM's GUP); then the rest
            MigrationDestination.Received got = MigrationDestination.receive(ch, vm, false);
            // post-copy: the guest runs at once, its faults on the pages still at the source served meanwhile
            PostCopy post = got.postCopy();
            try (io.guestmem.snapshot.RestoredMemory restored = got.memory()) {
                VmMemory mem = restored.memory();
                int tag = (int) mem.memory().readU64(LiveMigrationTest.TAG_GPA);
                Vcpu cpu = vm.createVcpu(0);
                long wrong = 0, checked = 0;
                for (long gpa : LiveMigrationTest.DATA_GPAS) {
                    GuestProgram p = g.checkAndRewriteEveryPage(LiveMigrationTest.CODE, gpa, LiveMigrationTest.guestPages(), tag, tag + 1);
                    for (GuestProgram.Chunk c : p.image()) mem.memory().write(c.gpa(), c.bytes());
                    List<VcpuExit> exits = g.runToCompletion(cpu, p, 64);
                    wrong += g.reported(exits).orElseThrow(() -> new IllegalStateException("no report: " + exits));
                    checked += LiveMigrationTest.guestPages();
                }
                MigrationStats s = got.stats();
                String served = "";
                if (post != null) {
                    post.pullRest();
                    if (!post.awaitComplete(Duration.ofSeconds(60)))
                        throw new IllegalStateException("post-copy did not complete", post.failure());
                    s = post.result();
                    served = " postCopyPages=" + s.postCopyPages() + " faults=" + post.stats().faultsServed()
                            + " accessor=" + post.stats().accessorServed() + " pulled=" + post.stats().prefetched()
                            + " failures=" + post.stats().failures();
                }
                System.out.println("RESULT rounds=" + s.rounds() + " pages=" + s.pagesSent() + " agree=" + s.agree()
                        + " checked=" + s.checked() + " wrong=" + wrong + " guestPages=" + checked + " tag=" + tag + served);
            }
        }
    }
}
