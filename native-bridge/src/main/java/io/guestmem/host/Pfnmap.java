package io.guestmem.host;

import io.guestmem.sys.SyscallException;
import java.util.Optional;

/**
 * Whether this kernel has a VM_PFNMAP mapping for {@link Backing#PFNMAP}, decided by the mapping's own smaps
 * VmFlags, never by kernel version. The candidate is a perf software event's ring buffer: kernels that map it
 * with {@code remap_pfn_range} show {@code pf io}, while Linux 6.12 inserts refcounted pages and shows
 * neither. Other PFNMAP mappings cannot back a region: {@code [vvar]} has a fixed size and place, and
 * {@code /dev/mem} refuses RAM under STRICT_DEVMEM.
 */
public final class Pfnmap {
    private Pfnmap() {}

    private static volatile Optional<String> unavailable;

    /** Empty where a pfnmap region can be created; otherwise why not (the kernel's answer). Probed once. */
    public static Optional<String> unavailableReason() {
        Optional<String> u = unavailable;
        if (u == null) {
            try (HostRegion r = HostRegion.perfRing(1).create()) {
                u = Optional.empty();
            } catch (PfnmapUnavailableException e) {
                u = Optional.of(e.getMessage());
            } catch (SyscallException e) {
                u = Optional.of("perf_event_open for a ring buffer failed: " + e.getMessage());
            }
            unavailable = u;
        }
        return u;
    }

    /** Whether {@link #unavailableReason()} is empty. */
    public static boolean available() {
        return unavailableReason().isEmpty();
    }
}
