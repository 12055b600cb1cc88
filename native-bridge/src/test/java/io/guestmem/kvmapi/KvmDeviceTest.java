package io.guestmem.kvmapi;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.sys.Errno;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.io.File;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The fd wrappers against the real /dev/kvm. */
class KvmDeviceTest {
    @BeforeAll
    static void needKvm() {
        boolean usable = new File(KvmDevice.PATH).exists() && new File(KvmDevice.PATH).canWrite();
        if (!usable) System.out.println("SKIP: " + KvmDevice.PATH + " absent or not writable");
        Assumptions.assumeTrue(usable, KvmDevice.PATH + " absent or not writable");
    }

    @Test
    void deviceAnswersApiVersionAndCapabilities() {
        try (KvmDevice kvm = KvmDevice.open()) {
            assertEquals(KvmIoctls.KVM_API_VERSION, kvm.apiVersion());
            assertTrue(kvm.checkExtension(KvmCap.USER_MEMORY) > 0);
            assertTrue(kvm.checkExtension(KvmCap.NR_MEMSLOTS) > 0);
            assertTrue(kvm.vcpuMmapSize() >= KvmLayouts.KVM_RUN.byteSize());
        }
    }

    @Test
    void regionErrorsNameTheIoctlAndItsArguments() {
        try (KvmDevice kvm = KvmDevice.open(); VmFd vm = kvm.createVm(0)) {
            long size = 2 * Posix.PAGE_SIZE;
            long addr = Mman.mmap(0, size, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE | Mman.MAP_ANONYMOUS, -1, 0);
            try {
                vm.setUserMemoryRegion2(0, 0, 0, size, addr, 0, 0);
                SyscallException e = assertThrows(SyscallException.class,
                        () -> vm.setUserMemoryRegion2(1, 0, Posix.PAGE_SIZE, size, addr, 0, 0));
                assertEquals(Errno.EEXIST.number, e.errno());
                assertTrue(e.getMessage().contains("KVM_SET_USER_MEMORY_REGION2, slot=1 flags=0x0 gpa=0x"
                        + Long.toHexString(Posix.PAGE_SIZE)), e.getMessage());
                SyscallException u = assertThrows(SyscallException.class,
                        () -> vm.setUserMemoryRegion(2, 0, 0x100000 + 1, size, addr));
                assertEquals(Errno.EINVAL.number, u.errno());
                vm.setUserMemoryRegion2(0, 0, 0, 0, 0, 0, 0); // delete
            } finally {
                Mman.munmap(addr, size);
            }
        }
    }

    @Test
    void closeIsIdempotentAndUseAfterCloseThrows() {
        KvmDevice kvm = KvmDevice.open();
        VmFd vm = kvm.createVm(0);
        VcpuFd vcpu = vm.createVcpu(0);
        KvmRun run = vcpu.kvmRun();
        vcpu.close();
        assertDoesNotThrow(vcpu::close);
        assertThrows(IllegalStateException.class, vcpu::run);
        assertThrows(IllegalStateException.class, run::exitReason);
        vm.close();
        vm.close();
        assertThrows(IllegalStateException.class, () -> vm.checkExtension(KvmCap.USER_MEMORY2));
        kvm.close();
        assertThrows(IllegalStateException.class, kvm::apiVersion);
    }

    @Test
    void guestMemfdIsCreatedWithTheReportedFlags() {
        try (KvmDevice kvm = KvmDevice.open(); VmFd vm = kvm.createVm(0)) {
            int flags = vm.checkExtension(KvmCap.GUEST_MEMFD_FLAGS);
            Assumptions.assumeTrue(vm.checkExtension(KvmCap.GUEST_MEMFD) > 0, "no KVM_CAP_GUEST_MEMFD");
            int fd = vm.createGuestMemfd(4 * Posix.PAGE_SIZE, flags);
            Posix.close(fd);
            SyscallException e = assertThrows(SyscallException.class, () -> vm.createGuestMemfd(Posix.PAGE_SIZE + 1, flags));
            assertEquals(Errno.EINVAL.number, e.errno());
            assertTrue(e.getMessage().contains("KVM_CREATE_GUEST_MEMFD, size=" + (Posix.PAGE_SIZE + 1) + " B"), e.getMessage());
        }
    }
}
