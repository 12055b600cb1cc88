package io.guestmem.gmem;

import io.guestmem.procfs.KPageFlag;
import io.guestmem.procfs.KPageFlags;
import io.guestmem.procfs.Maps;
import io.guestmem.procfs.MapsEntry;
import io.guestmem.procfs.Pagemap;
import io.guestmem.procfs.PagemapEntry;
import io.guestmem.procfs.Smaps;
import io.guestmem.procfs.Vma;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Mman;
import io.guestmem.sys.Posix;
import java.util.Set;

/**
 * Says what backs a host virtual address and why KVM can or cannot map it, from the kernel's own views:
 * /proc/self/maps (the VMA name), smaps VmFlags, pagemap, kpageflags and, for secret memory, a GUP probe.
 *
 * <h2>memfd_secret, measured on this machine's kernel (6.18, x86-64, PVM-based KVM)</h2>
 * <ul>
 *   <li>maps: {@code rw-s ... /secretmem (deleted)}; smaps VmFlags {@code rd wr sh mr mw ms lo dd} (secretmem
 *       locks its pages and keeps them out of core dumps).</li>
 *   <li>pagemap: present, file/shared, exclusive, with a real pfn; kpageflags of that pfn:
 *       {@code UPTODATE LRU MMAP UNEVICTABLE MLOCKED} (0x200040828), kpagecount 1. The struct page exists:
 *       neither file shows that the page is gone from the kernel's direct map.</li>
 *   <li>GUP refuses it: {@code MADV_POPULATE_READ} on the mapping fails with {@code EINVAL}. KVM's fault path
 *       ({@code hva_to_pfn}: get_user_pages) would therefore fail with {@code EFAULT}.</li>
 *   <li>KVM accepts it as an ordinary (non-guest_memfd) memslot: KVM_SET_USER_MEMORY_REGION2 succeeds.</li>
 *   <li>A flat 32-bit guest reading it got the host's value: this host's KVM (PVM) ran every instruction of
 *       the tiny guests through its instruction emulator (tracefs: {@code kvm_emulate_insn} for each, no
 *       {@code kvm_page_fault}), and the emulator copies guest memory through the user mapping
 *       ({@code copy_from_user}), which secretmem leaves in place. The GUP path that refuses secret memory was
 *       never taken.</li>
 *   <li>KVM's own GUP-based path does refuse it: pointing the vCPU's kvm-clock MSR
 *       ({@code MSR_KVM_SYSTEM_TIME_NEW}, which KVM writes through a {@code gfn_to_pfn_cache}, i.e. hva_to_pfn)
 *       at a page of the secret slot leaves it all zeros after KVM_RUN, while the same MSR aimed at anonymous
 *       memory before and after gets a pvclock (version 2): KVM silently skips the update it cannot map.</li>
 *   <li>A KVM that maps guest memory with hardware paging faults through GUP and fails KVM_RUN
 *       with {@code EFAULT}: {@link #explainGuestFault} turns that into a typed error naming the reason.</li>
 * </ul>
 */
public final class MemoryClassifier {
    private MemoryClassifier() {}

    /** Classifies the page holding {@code hva} in this process. Not a hot path: it reads several proc files. */
    public static MemoryClass classify(long hva) {
        long page = hva & -Posix.PAGE_SIZE;
        MapsEntry vma = Maps.find(Posix.getpid(), page);
        if (vma == null)
            return new MemoryClass(hva, MemoryKind.UNMAPPED, null, null, Set.of(), false, 0, "no VMA maps " + Fmt.hex(hva));
        String name = vma.name() == null ? "" : vma.name();
        MemoryKind kind = MemoryKind.ofName(name).orElseGet(() -> {
            Vma v = Smaps.vmaOf(page); // the flags only where the name does not tell
            return v == null ? MemoryKind.ORDINARY : MemoryKind.of(v);
        });
        PagemapEntry pm;
        try (Pagemap p = Pagemap.openSelf()) {
            pm = p.entry(page);
        }
        Set<KPageFlag> flags = Set.of();
        if (pm.present() && pm.pfn().isPresent()) {
            try (KPageFlags kf = KPageFlags.open()) {
                flags = kf.flags(pm.pfn().getAsLong());
            } catch (RuntimeException unreadable) {
                // /proc/kpageflags needs CAP_SYS_ADMIN: the class stands without it
            }
        }
        boolean gupRefused = false;
        int gupErrno = 0;
        if (kind == MemoryKind.SECRET_MEM) {
            // MADV_POPULATE_READ faults pages in the way get_user_pages does; for secretmem it fails without
            // side effect. Not probed for other kinds, where it would populate memory.
            int r = Mman.madviseRaw(page, Posix.PAGE_SIZE, Mman.MADV_POPULATE_READ);
            gupRefused = r < 0;
            gupErrno = r < 0 ? -r : 0;
        }
        return new MemoryClass(hva, kind, name, pm, flags, gupRefused, gupErrno, why(kind, pm, flags, gupRefused, gupErrno));
    }

    private static String why(MemoryKind kind, PagemapEntry pm, Set<KPageFlag> flags, boolean gupRefused, int gupErrno) {
        return switch (kind) {
            case SECRET_MEM -> "memfd_secret memory: removed from the kernel's direct map, and get_user_pages refuses it"
                    + (gupRefused ? " (MADV_POPULATE_READ -> " + Errno.nameOf(gupErrno) + ")" : " (but the probe was not refused!)")
                    + ", so KVM's hva_to_pfn cannot get its pfn and a guest fault on it fails with EFAULT; only accesses"
                    + " copied through the user mapping (KVM's instruction emulator) reach it. pagemap still shows "
                    + (pm.present() ? "it present" + pm.pfn().stream().mapToObj(p -> " at pfn " + Fmt.hex(p)).findFirst().orElse("")
                    : "it not present") + ", kpageflags " + flags + ": the struct page exists, only its direct-map entry is gone";
            case GUEST_MEMFD -> "guest_memfd: KVM maps it through kvm_gmem_get_pfn (the file), not through this hva";
            case PFNMAP -> "VM_PFNMAP/VM_IO: no struct page; KVM maps it through follow_pfnmap and does not refcount it";
            case ORDINARY -> "ordinary memory: get_user_pages reaches it and KVM maps it through hva_to_pfn";
            case UNMAPPED -> "not mapped";
        };
    }

    /**
     * The typed error for a guest access KVM could not map ({@code KVM_RUN} failing with {@code errno}, or a
     * KVM_EXIT_MEMORY_FAULT) at {@code gpa}, whose memslot maps it at {@code hva}: the classification says why.
     */
    public static GuestMemoryFaultException explainGuestFault(long gpa, long hva, Errno errno) {
        MemoryClass c = classify(hva);
        return new GuestMemoryFaultException(errno, gpa, c);
    }
}
