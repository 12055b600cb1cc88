package io.guestmem.kvm.x86;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.kvm.GuestRam;
import io.guestmem.kvm.KvmAvailable;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.memslot.MemslotChange.Kind;
import io.guestmem.sys.Memfd;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * What the real KVM does with a memfd_secret slot (pages removed from the kernel's direct map, which KVM's
 * gup-based fault path refuses). KVM accepts the slot (it checks no backing at SET_USER_MEMORY_REGION time);
 * the answer comes when the guest touches it. The test records that answer and checks the host's view agrees.
 */
class SecretMemSlotTest {
    static final long PAGE = Posix.PAGE_SIZE, GDT = 0x500, CODE = 0x1000, SECRET_GPA = 0x100000;

    @BeforeAll
    static void kvm() {
        KvmAvailable.assume();
    }

    @Test
    void guestTouchingASecretmemSlot() {
        int fd;
        try {
            fd = Memfd.secret(0);
        } catch (SyscallException e) {
            System.out.println("SKIP: memfd_secret unavailable: " + e.getMessage());
            org.junit.jupiter.api.Assumptions.abort("memfd_secret unavailable: " + e.getMessage());
            return;
        }
        long size = 4 * PAGE;
        try (KvmVm vm = KvmVm.open(); GuestRam boot = GuestRam.anonymous(0x10000)) {
            Memfd.ftruncate(fd, size);
            long addr = Mman.mmap(0, size, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0);
            try (GuestRam secret = GuestRam.adopt(addr, size)) {
                secret.putU64(0, 0x5ec2e7L); // the host (owner) can touch it
                X86Cpu.prepareVm(vm);
                boot.load(GDT, X86GuestPrograms.flatGdt());
                vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                        new Memslot(0, 0, 0, boot.size / PAGE, boot.addr, 0, -1, 0)));
                vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                        new Memslot(0, 1, SECRET_GPA / PAGE, size / PAGE, addr, 0, -1, 0)));
                Vcpu cpu = vm.createVcpu(0);
                X86Program read = X86GuestPrograms.readU32ThenOut(CODE, SECRET_GPA, 0x80);
                boot.load(CODE, read.code());
                X86Cpu.enter(cpu, read, GDT);
                List<Object> outcome = new ArrayList<>();
                try {
                    for (int i = 0; i < 4; i++) {
                        VcpuExit e = cpu.run();
                        outcome.add(e);
                        if (!(e instanceof VcpuExit.Io)) break;
                    }
                } catch (SyscallException e) {
                    outcome.add(e.getMessage());
                }
                System.out.println("memfd_secret slot, guest read of gpa 0x100000: " + outcome);
                assertTrue(!outcome.isEmpty());
                Object first = outcome.get(0);
                if (first instanceof VcpuExit.Io io) {
                    // The guest saw the secret: on this host KVM reached it (its emulator copies through the hva).
                    assertEquals(0x5ec2e7L, io.value());
                } else {
                    // KVM refused: a failed KVM_RUN (EFAULT) or a memory-fault exit naming the gpa.
                    assertTrue(first instanceof String || first instanceof VcpuExit.MemoryFault
                            || first instanceof VcpuExit.InternalError, "unexpected outcome " + outcome);
                }
            }
        } finally {
            Posix.close(fd);
        }
    }
}
