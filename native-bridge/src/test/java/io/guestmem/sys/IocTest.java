package io.guestmem.sys;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** The _IOC math gives the numbers the kernel headers (and kernel-abi.md) spell out. */
class IocTest {
    @Test
    void knownNumbers() {
        assertEquals(0xC018AA3FL, Userfaultfd.UFFDIO_API);
        assertEquals(0xC020AA00L, Userfaultfd.UFFDIO_REGISTER);
        assertEquals(0x8010AA01L, Userfaultfd.UFFDIO_UNREGISTER);
        assertEquals(0xC018AA06L, Userfaultfd.UFFDIO_WRITEPROTECT);
        assertEquals(0x8010AA02L, Userfaultfd.UFFDIO_WAKE);
        assertEquals(0xC028AA03L, Userfaultfd.UFFDIO_COPY);
        assertEquals(0xC020AA04L, Userfaultfd.UFFDIO_ZEROPAGE);
        assertEquals(0xC020AA07L, Userfaultfd.UFFDIO_CONTINUE);
        assertEquals(0xC020AA08L, Userfaultfd.UFFDIO_POISON);
        assertEquals(0xC0606610L, Ioc.iowr('f', 16, 96), "PAGEMAP_SCAN");
        assertEquals(0xC040AED4L, Ioc.iowr(0xAE, 0xd4, 64), "KVM_CREATE_GUEST_MEMFD");
        assertEquals(0x40A0AE49L, Ioc.iow(0xAE, 0x49, 160), "KVM_SET_USER_MEMORY_REGION2");
        assertEquals(0xAE80L, Ioc.io(0xAE, 0x80), "KVM_RUN");
        assertEquals(0x8090AE81L, Ioc.ior(0xAE, 0x81, 144), "KVM_GET_REGS");
    }
}
