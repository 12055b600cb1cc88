package io.guestmem.access;

import io.guestmem.host.Backing;

/**
 * One row of a vhost-user memory table: guest RAM at {@code gpa} of {@code size} bytes is the file
 * {@code fd} from {@code fdOffset} (what another process maps, MAP_SHARED), mapped in this process at
 * {@code hva} (vhost-user's {@code userspace_addr}, which the back-end uses to translate ring addresses).
 */
public record SharedRegion(int slotId, long gpa, long size, long hva, int fd, long fdOffset, Backing backing) {}
