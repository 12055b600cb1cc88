package io.guestmem.access;

import io.guestmem.memslot.Memslot;
import java.util.ArrayList;
import java.util.List;

/**
 * The vhost-user memory table of a {@link GuestMemory} (what {@code VHOST_USER_SET_MEM_TABLE} sends): one
 * {@link SharedRegion} per slot backed by a shareable region (memfd, hugetlb memfd, guest_memfd or another
 * caller fd), in gpa order. Another process maps the row's fd (passed over a unix socket, or opened as
 * {@code /proc/PID/fd/N}) at its file offset for its size.
 */
final class VhostUserTable {
    private VhostUserTable() {}

    static List<SharedRegion> of(SlotTable t) {
        List<SharedRegion> out = new ArrayList<>();
        for (SlotMapping m : t.mappings()) {
            if (m.view() == null || !m.region().isOpen()) continue;
            var fd = m.region().fd();
            if (fd.isEmpty()) continue;
            Memslot s = m.slot();
            long inRegion = s.userspaceAddr() - m.region().address();
            out.add(new SharedRegion(s.id(), s.baseGfn() << t.shift, s.npages() << t.shift,
                    s.userspaceAddr(), fd.getAsInt(), m.region().fdOffset() + inRegion, m.region().backing()));
        }
        return out;
    }
}
