package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.guestmem.access.DirtyPages;
import io.guestmem.access.GuestMemory;
import io.guestmem.host.HostRegion;
import io.guestmem.kvm.KvmDirtyLog;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.GuestProgram;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.sys.Arch;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.stream.LongStream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Live migration's dirty pages: KVM's dirty log against the library's own dirty bitmap on one real slot. The
 * guest writes some pages (KVM_GET_DIRTY_LOG sees them, the VMM's bitmap cannot), the VMM writes others through
 * {@link GuestMemory} (its bitmap sees them, KVM's log cannot), and {@code pagesToSend} is exactly the union.
 */
@org.junit.jupiter.api.extension.ExtendWith(LeakGuard.class)
class DirtyMergeTest {
    static final long PAGE = io.guestmem.sys.Posix.PAGE_SIZE;

    @Test
    void kvmLogAndVmmBitmapMergeIntoPagesToSend() {
        Assumptions.assumeTrue(Files.isWritable(Path.of("/dev/kvm")), "no usable /dev/kvm");
        try (KvmVm vm = KvmVm.open();
             HostRegion boot = HostRegion.anonymous(64 << 10).create();
             HostRegion ram = HostRegion.anonymous(128 * PAGE).create()) {
            Memslots memslots = new Memslots(vm.memslotsConfig());
            memslots.addObserver(vm.memslotObserver());
            GuestMemory mem = new GuestMemory(memslots);
            mem.addRam(0, 0, boot);
            long base = 16L << 20;
            Memslot slot = mem.addRam(1, base, ram, 0, ram.size(), Memslot.LOG_DIRTY_PAGES);
            try (KvmDirtyLog log = KvmDirtyLog.of(vm, slot)) {
                log.collect(); // start from a clean log
                mem.collectDirty(1);
                // The guest writes pages 0..7 of the slot.
                // (every 4 KiB guest page of 8 host pages: the same 8 gfns with 4K or 16K host pages)
                GuestCpu g = GuestCpu.current();
                g.prepareVm(vm);
                Vcpu vcpu = vm.createVcpu(0);
                GuestProgram prog = g.writeGfnToEveryPage(0x1000, base, 8 * PAGE / GuestCpu.GUEST_PAGE, 0x77);
                for (GuestProgram.Chunk c : prog.image()) mem.write(c.gpa(), c.bytes());
                assertEquals(List.of(), g.runToCompletion(vcpu, prog, 16));
                // The VMM (a device model) writes pages 100..103 through the API.
                for (long p = 100; p < 104; p++) mem.writeU64(base + p * PAGE, 0xd0d0L);

                long g0 = slot.baseGfn();
                long[] kvm = log.collect();
                Arrays.sort(kvm);
                long[] guestPages = LongStream.range(g0, g0 + 8).toArray();
                long[] vmmPages = LongStream.range(g0 + 100, g0 + 104).toArray();
                System.out.println("KVM dirty log: " + kvm.length + " gfns; VMM writes: " + vmmPages.length);
                assertArrayEquals(guestPages, kvm, "KVM's log names exactly the guest's pages, not the VMM's");

                List<DirtyPages> send = mem.pagesToSend(s -> s.id() == 1 ? kvm : null);
                DirtyPages d = send.stream().filter(x -> x.slotId() == 1).findFirst().orElseThrow();
                long[] union = LongStream.concat(LongStream.of(guestPages), LongStream.of(vmmPages)).toArray();
                assertArrayEquals(union, d.gfns(), "pages to send = guest's (KVM) + VMM's (its own bitmap)");
                assertEquals(vmmPages.length, d.fromVmm());
                assertEquals(guestPages.length, d.fromExternal());
                assertEquals(0, mem.collectDirty(1).count(), "collecting cleared the VMM's bitmap");
            }
            mem.close();
        }
    }
}
