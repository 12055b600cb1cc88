package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.gmem.GuestMemfdRegion;
import io.guestmem.gmem.GuestMemoryFaultException;
import io.guestmem.gmem.MemoryClass;
import io.guestmem.gmem.MemoryClassifier;
import io.guestmem.gmem.MemoryKind;
import io.guestmem.host.HostRegion;
import io.guestmem.host.Prefault;
import io.guestmem.kvm.GuestRunException;
import io.guestmem.kvm.KvmVm;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.GuestProgram;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.MemslotChange;
import io.guestmem.procfs.KPageFlag;
import io.guestmem.sys.Arch;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Ioc;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.io.File;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * memfd_secret memory as KVM guest RAM on the real kernel: what the classifier sees, what a guest touching it
 * gets, and what KVM's own GUP-based path (the kvm-clock pfn cache) does with it. Everything printed is
 * measured here; the Javadoc of {@link MemoryClassifier} records the results of this machine.
 */
@org.junit.jupiter.api.extension.ExtendWith(LeakGuard.class)
class SecretMemoryKvmTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static final long CODE = 0x1000, SECRET_GPA = 0x100000, PLAIN_GPA = 0x200000;
    /** KVM's kvm-clock MSR; KVM writes a pvclock_vcpu_time_info at the gpa through a gfn_to_pfn_cache (GUP). */
    static final int MSR_KVM_SYSTEM_TIME_NEW = 0x4b564d01;
    static final long KVM_SET_MSRS = Ioc.iow(0xAE, 0x89, 8);

    @BeforeAll
    static void kvm() {
        File f = new File("/dev/kvm");
        boolean ok = f.canRead() && f.canWrite();
        if (!ok) System.out.println("SKIP: /dev/kvm is absent or not read-write for this user");
        Assumptions.assumeTrue(ok);
    }

    @Test
    void classifierSaysWhySecretMemoryIsDifferent() {
        try (HostRegion secret = HostRegion.secret(4 * PAGE).prefault(Prefault.Mode.WRITE).create();
             HostRegion plain = HostRegion.anonymous(PAGE).prefault(Prefault.Mode.WRITE).create()) {
            MemoryClass c = MemoryClassifier.classify(secret.address());
            System.out.println("secret memory: " + c);
            assertEquals(MemoryKind.SECRET_MEM, c.kind());
            assertTrue(c.vmaName().startsWith("/secretmem"), c.vmaName());
            assertTrue(c.gupRefused(), "get_user_pages (MADV_POPULATE_READ) must refuse secret memory");
            assertTrue(c.pagemap().present(), "the user mapping still maps it");
            assertTrue(c.pagemap().pfn().isPresent(), "root sees its pfn");
            // secretmem makes its mapping unevictable (PG_unevictable) and its VMA VM_DONTDUMP (smaps "dd"). Whether
            // the VMA is also VM_LOCKED and the page PG_mlocked is the kernel's choice: the x86 6.18 runs showed
            // PG_mlocked, arm64 6.12 shows neither ("rd wr sh mr mw ms dd"). Both are printed, not assumed.
            assertTrue(c.kpageflags().contains(KPageFlag.UNEVICTABLE), "secretmem pages are unevictable: " + c.kpageflags());
            io.guestmem.procfs.Vma svma = io.guestmem.procfs.Smaps.vmaOf(secret.address());
            assertTrue(svma.has(io.guestmem.procfs.VmFlag.DONTDUMP), "secretmem VMAs are VM_DONTDUMP: " + svma.vmFlagCodes());
            if (c.kpageflags().contains(KPageFlag.MLOCKED))
                assertTrue(svma.has(io.guestmem.procfs.VmFlag.LOCKED), "a PG_mlocked secretmem page sits in a VM_LOCKED VMA: " + svma.vmFlagCodes());
            System.out.println("secretmem page " + (c.kpageflags().contains(KPageFlag.MLOCKED) ? "is" : "is not")
                    + " PG_mlocked on this kernel; VmFlags " + svma.vmFlagCodes());
            MemoryClass p = MemoryClassifier.classify(plain.address());
            System.out.println("anonymous memory: " + p.kind() + " " + p.kpageflags() + " -- " + p.why());
            assertEquals(MemoryKind.ORDINARY, p.kind());
            assertTrue(p.kpageflags().contains(KPageFlag.ANON));
        }
        try (KvmVm vm = KvmVm.open(); GuestMemfdRegion g = GuestMemfdRegion.create(vm, PAGE)) {
            if (g.hostMapped()) {
                MemoryClass c = MemoryClassifier.classify(g.hostAddress());
                System.out.println(g.backing() + " mapping: " + c.kind() + " " + c.vmaName());
                // Without KVM_CAP_GUEST_MEMFD (arm64 6.12) the region is a memfd stand-in: the kernel sees a memfd.
                assertEquals(g.backing().isRealGuestMemfd() ? MemoryKind.GUEST_MEMFD : MemoryKind.ORDINARY, c.kind(),
                        c.why());
            }
        }
    }

    @Test
    void guestTouchingSecretMemoryAndKvmsOwnGupPath() {
        try (KvmVm vm = KvmVm.open();
             HostRegion low = HostRegion.anonymous(0x10000).create();
             HostRegion secret = HostRegion.secret(4 * PAGE).prefault(Prefault.Mode.WRITE).create();
             HostRegion plain = HostRegion.anonymous(4 * PAGE).create()) {
            GuestCpu g = GuestCpu.current();
            g.prepareVm(vm);
            slot(vm, 0, 0, low);
            slot(vm, 1, SECRET_GPA, secret);   // KVM accepts it: the failure, if any, is at fault time
            slot(vm, 2, PLAIN_GPA, plain);
            Vcpu cpu = vm.createVcpu(0);
            secret.segment().set(ValueLayout.JAVA_INT, 0, 0x5EC12E7);

            GuestProgram read = g.readAndReport(CODE, SECRET_GPA);
            for (GuestProgram.Chunk c : read.image())
                MemorySegment.copy(c.bytes(), 0, low.segment(), ValueLayout.JAVA_BYTE, c.gpa(), c.bytes().length);
            try {
                List<VcpuExit> exits = g.runToCompletion(cpu, read, 8);
                System.out.println("guest read of secret memory: " + exits
                        + " -- KVM did not refuse it: this KVM reached it through a path that copies via the user"
                        + " mapping (the instruction emulator), not through get_user_pages");
                assertEquals(0x5EC12E7, g.reported(exits).orElseThrow(() -> new AssertionError(exits.toString())),
                        "what the guest read is the host's value");
            } catch (GuestRunException | SyscallException e) {
                GuestMemoryFaultException typed = MemoryClassifier.explainGuestFault(SECRET_GPA, secret.address(), Errno.EFAULT);
                System.out.println("guest read of secret memory failed: " + e.getMessage() + "\n  -> " + typed.getMessage());
                assertEquals(MemoryKind.SECRET_MEM, typed.memoryClass().kind());
            }

            if (!Arch.CURRENT.isX86()) {
                System.out.println("SKIP (part): the kvm-clock MSR probe of KVM's GUP path is x86-only; this is "
                        + Arch.CURRENT.name());
                return;
            }
            // KVM's own GUP path: the kvm-clock page is written by KVM through a gfn_to_pfn_cache (hva_to_pfn).
            long plainTime = pvclockVersionAfterRun(cpu, read, PLAIN_GPA, plain.segment());
            long secretTime = pvclockVersionAfterRun(cpu, read, SECRET_GPA + 0x800, secret.segment().asSlice(0x800));
            // And afterwards in ordinary memory again: KVM still updates the clock, so the zero above is the refusal.
            long plainAgain = pvclockVersionAfterRun(cpu, read, PLAIN_GPA + 0x800, plain.segment().asSlice(0x800));
            System.out.println("kvm-clock page written by KVM: in anonymous memory version=" + plainTime
                    + ", in secret memory version=" + secretTime + ", in anonymous memory again version=" + plainAgain);
            assertNotEquals(0, plainAgain, "KVM still writes the clock after the secret attempt");
            assertNotEquals(0, plainTime, "KVM fills the kvm-clock page in ordinary memory");
            assertEquals(0, secretTime, "KVM's GUP-based pfn cache cannot reach secret memory, so it never writes it");
            GuestMemoryFaultException typed = MemoryClassifier.explainGuestFault(SECRET_GPA + 0x800, secret.address() + 0x800, Errno.EFAULT);
            System.out.println("the typed error a GUP-based KVM fault gives: " + typed.getMessage());
            assertTrue(typed.getMessage().contains("get_user_pages refuses it"), typed.getMessage());
        }
    }

    /** Points the vCPU's kvm-clock at {@code gpa}, runs the guest once, returns the pvclock version KVM wrote. */
    static long pvclockVersionAfterRun(Vcpu cpu, GuestProgram program, long gpa, MemorySegment at) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment msrs = a.allocate(8 + 16, 8);
            msrs.set(ValueLayout.JAVA_INT, 0, 1);                        // nmsrs
            msrs.set(ValueLayout.JAVA_INT, 8, MSR_KVM_SYSTEM_TIME_NEW);  // entries[0].index
            msrs.set(ValueLayout.JAVA_LONG, 16, gpa | 1);                // data: gpa | enable
            int n = Posix.ioctl(cpu.vcpuFd().fd(), KVM_SET_MSRS, msrs, "KVM_SET_MSRS(MSR_KVM_SYSTEM_TIME_NEW)");
            assertEquals(1, n, "KVM accepted the kvm-clock MSR");
        }
        try {
            GuestCpu.current().runToCompletion(cpu, program, 8);
        } catch (GuestRunException e) {
            System.out.println("run with kvm-clock at " + Long.toHexString(gpa) + ": " + e.getMessage());
        }
        return Integer.toUnsignedLong(at.get(ValueLayout.JAVA_INT, 0)); // pvclock_vcpu_time_info.version
    }

    static void slot(KvmVm vm, int id, long gpa, HostRegion r) {
        vm.memslotObserver().beforeCommit(new MemslotChange(MemslotChange.Kind.CREATE, null,
                new Memslot(0, id, gpa / PAGE, r.size() / PAGE, r.address(), 0, -1, 0)));
    }
}
