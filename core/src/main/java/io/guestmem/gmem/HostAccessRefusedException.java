package io.guestmem.gmem;

import io.guestmem.mmu.Mappability;
import io.guestmem.KvmException;
import io.guestmem.sys.Errno;

/**
 * The host asked for a guest_memfd page it may not touch: the page is private ({@link Mappability#GUEST}),
 * converting ({@link Mappability#NONE}), or the region has no host mapping at all (a guest_memfd without
 * INIT_SHARED, whose pages raise SIGBUS on any host touch). {@code EFAULT}, as a host fault on such a page
 * would fail in the kernel ({@code kvm_gmem_fault} answers SIGBUS).
 *
 * <p>This is the refusal of the region's own accessors, which address the file by offset. Through
 * {@link io.guestmem.access.GuestMemory}, which addresses guest physical memory, the same refusal is a
 * {@link io.guestmem.access.PrivateMemoryException}: it carries what a guest-address access needs (gpa, slot,
 * bytes done before the refused page, as every {@code GuestMemoryException} does) and is raised by the access
 * policy before the region is touched, so no call ever sees both.
 */
public final class HostAccessRefusedException extends KvmException {
    private final long offset;
    private final Mappability mappability;

    public HostAccessRefusedException(String operation, long offset, Mappability mappability, String reason) {
        super(Errno.EFAULT, operation, reason);
        this.offset = offset;
        this.mappability = mappability;
    }

    /** The guest_memfd offset of the refused page. */
    public long offset() {
        return offset;
    }

    /** The page's mappability when refused, or null when the region has no host mapping at all. */
    public Mappability mappability() {
        return mappability;
    }
}
