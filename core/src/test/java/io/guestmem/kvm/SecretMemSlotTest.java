package io.guestmem.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
    static final long PAGE = Posix.PAGE_SIZE, CODE = 0x1000, SECRET_GPA = 0x100000;

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
                GuestCpu g = GuestCpu.current();
                g.prepareVm(vm);
                vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                        new Memslot(0, 0, 0, boot.size / PAGE, boot.addr, 0, -1, 0)));
                vm.memslotObserver().beforeCommit(new MemslotChange(Kind.CREATE, null,
                        new Memslot(0, 1, SECRET_GPA / PAGE, size / PAGE, addr, 0, -1, 0)));
                Vcpu cpu = vm.createVcpu(0);
                GuestProgram read = g.readAndReport(CODE, SECRET_GPA);
                boot.load(read, 0);
                g.enter(cpu, read);
                List<Object> outcome = new ArrayList<>();
                try {
                    for (int i = 0; i < 4; i++) {
                        VcpuExit e = cpu.run();
                        outcome.add(e);
                        if (g.reported(List.of(e)).isEmpty()) break; // stop at anything but the report
                    }
                } catch (SyscallException e) {
                    outcome.add(e.getMessage());
                }
                System.out.println("memfd_secret slot, guest read of gpa 0x100000: " + outcome);
                assertTrue(!outcome.isEmpty());
                Object first = outcome.get(0);
                if (first instanceof VcpuExit e && g.reported(List.of(e)).isPresent()) {
                    // The guest saw the secret: on this host KVM reached it (its emulator copies through the hva).
                    assertEquals(0x5ec2e7L, g.reported(List.of(e)).getAsLong());
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
