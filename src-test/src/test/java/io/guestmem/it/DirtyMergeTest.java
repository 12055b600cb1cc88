package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import io.guestmem.access.DirtyPages;
import io.guestmem.access.GuestMemory;
import io.guestmem.host.HostRegion;
import io.guestmem.kvm.KvmDirtyLog;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.x86.X86Cpu;
import io.guestmem.kvm.x86.X86GuestPrograms;
import io.guestmem.kvm.x86.X86Program;
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
 * Issue 6 and 11: KVM's dirty log against the library's own dirty bitmap on one real slot. The guest writes
 * some pages (KVM_GET_DIRTY_LOG sees them, the VMM's bitmap cannot), the VMM writes others through
 * {@link GuestMemory} (its bitmap sees them, KVM's log cannot), and {@code pagesToSend} is exactly the union.
 */
@org.junit.jupiter.api.extension.ExtendWith(LeakGuard.class)
class DirtyMergeTest {

    @Test
    void kvmLogAndVmmBitmapMergeIntoPagesToSend() {
        Assumptions.assumeTrue(Arch.CURRENT.isX86(), "the tiny guest is x86 code");
        Assumptions.assumeTrue(Files.isWritable(Path.of("/dev/kvm")), "no usable /dev/kvm");
        try (KvmVm vm = KvmVm.open();
             HostRegion boot = HostRegion.anonymous(64 << 10).create();
             HostRegion ram = HostRegion.anonymous(1 << 20).create()) {
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
                X86Cpu.prepareVm(vm);
                Vcpu vcpu = vm.createVcpu(0);
                mem.write(0, X86GuestPrograms.flatGdt());
                X86Program prog = X86GuestPrograms.writeGfnToEveryPage(0x1000, base, 8, 0x77);
                mem.write(0x1000, prog.code());
                X86Cpu.run(vcpu, prog, 0, 16);
                // The VMM (a device model) writes pages 100..103 through the API.
                for (long p = 100; p < 104; p++) mem.writeU64(base + p * 4096, 0xd0d0L);

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
