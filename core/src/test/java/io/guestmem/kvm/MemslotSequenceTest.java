package io.guestmem.kvm;

import static org.junit.jupiter.api.Assertions.assertTrue;

import io.guestmem.memslot.GuestMemfdFile;
import io.guestmem.memslot.GuestMemfdTable;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.procfs.AccessOk;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Posix;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The differential test's sequence against the writer alone, on any host (no KVM): every answer must be
 * success or an errno KVM itself gives for a slot change (EINVAL, EEXIST, EBADF, the configured gpa-limit
 * errno), never another exception, and the sequence must exercise every kind of answer, or the comparison
 * with KVM would prove little. Configurations shaped like arm64's (one address space, IPA 40 bits, EFAULT)
 * and x86's (two address spaces, EINVAL), with guest_memfds standing in as open descriptors of /dev/null.
 */
class MemslotSequenceTest {
    static final long PAGE = Posix.PAGE_SIZE;

    record File(int fd, long size) implements GuestMemfdFile {}

    @Test
    void theSequenceGetsOnlyKvmsAnswersFromTheWriter() {
        int[] fds = new int[4];
        for (int i = 0; i < fds.length; i++) fds[i] = Posix.open("/dev/null", Posix.O_RDONLY);
        try {
            run("arm64-like", 1, 32767, 1L << 40, Errno.EFAULT, fds);
            run("x86-like", 2, 32764, 1L << 46, Errno.EINVAL, fds);
        } finally {
            for (int fd : fds) Posix.close(fd);
        }
    }

    static void run(String name, int addressSpaces, int maxSlots, long gpaLimit, Errno gpaErrno, int[] fds) {
        GuestMemfdTable table = new GuestMemfdTable();
        table.register(new File(fds[0], MemslotDifferentialTest.GMEM_PAGES * PAGE));
        table.register(new File(fds[1], MemslotDifferentialTest.GMEM_PAGES * PAGE));
        Memslots.Config config = new Memslots.Config(PageGeometry.host(), maxSlots, addressSpaces, true, true,
                AccessOk.limit(), gpaLimit, gpaErrno, table);
        Set<Integer> allowed = new TreeSet<>(List.of(0, Errno.EINVAL.number, Errno.EEXIST.number, Errno.EBADF.number, gpaErrno.number));
        Map<Integer, Integer> answers = new TreeMap<>();
        int gmemBound = 0, high = 0;
        for (long seed = 1; seed <= 4; seed++) {
            Memslots ms = new Memslots(config);
            MemslotDifferentialTest.Space sp = new MemslotDifferentialTest.Space(true, config, 0x7f00_0000_0000L,
                    new int[] {fds[0], fds[1]}, fds[2], fds[3]);
            SplittableRandom rnd = new SplittableRandom(seed * 0x9E3779B97F4A7C15L);
            Map<Long, Memslot> slots = new HashMap<>();
            for (int step = 0; step < MemslotDifferentialTest.STEPS; step++) {
                MemslotDifferentialTest.Req r = MemslotDifferentialTest.next(rnd, sp, slots);
                int a = MemslotDifferentialTest.model(ms, r); // anything but a KvmException propagates and fails
                assertTrue(allowed.contains(a), name + " seed " + seed + " step " + step + ": " + r + " -> " + a);
                answers.merge(a, 1, Integer::sum);
                if (a == 0 && (r.flags() & Memslot.GUEST_MEMFD) != 0 && r.size() != 0) gmemBound++;
                if (a == 0 && r.size() != 0 && r.hva() + r.size() == config.userAddressLimit()) high++;
                MemslotDifferentialTest.syncSlots(ms, slots);
            }
        }
        System.out.println("memslot sequence (" + name + "): answers " + answers + ", guest_memfd bindings made "
                + gmemBound + ", slots ending at the access_ok limit made " + high);
        for (int e : allowed) assertTrue(answers.getOrDefault(e, 0) > 0, name + ": the sequence never got " + e + ": " + answers);
        assertTrue(gmemBound > 0 && high > 0, name + ": no guest_memfd binding or no high-hva slot was accepted");
    }
}
