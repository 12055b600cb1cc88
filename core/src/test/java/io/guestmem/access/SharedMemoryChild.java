package io.guestmem.access;

import io.guestmem.host.Backing;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.host.RegionBuilder;
import io.guestmem.sys.Pidfd;
import io.guestmem.sys.Posix;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The other process of a vhost-user memory table, run by {@link RegionOptionsTest} as a child JVM: takes a
 * duplicate of the parent's fd with pidfd_getfd (the same open file a unix-socket SCM_RIGHTS would pass; a
 * guest_memfd cannot be reopened through /proc/PID/fd/N), maps {@code size} bytes at {@code offset} through the
 * bridge, prints the u64 at {@code readAt} in hex and writes {@code value} at {@code writeAt}.
 * Arguments: pid fd offset size readAt writeAt value(hex) hugePageBytes(0: base pages).
 */
public final class SharedMemoryChild {
    private SharedMemoryChild() {}

    public static void main(String[] a) {
        ValueLayout.OfLong le = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        int fd = Pidfd.dupFrom(Integer.parseInt(a[0]), Integer.parseInt(a[1]));
        try {
            RegionBuilder b = HostRegion.ofFd(fd, Long.parseLong(a[2]), Long.parseLong(a[3]), Backing.FD);
            long huge = Long.parseLong(a[7]);
            if (huge != 0) b.fdHugePages(HugePagePools.size(huge));
            try (HostRegion r = b.create()) {
                System.out.println(Long.toHexString(r.segment().get(le, Long.parseLong(a[4]))));
                r.segment().set(le, Long.parseLong(a[5]), Long.parseUnsignedLong(a[6], 16));
            }
        } finally {
            Posix.close(fd);
        }
    }
}
