package io.guestmem.lock;

import io.guestmem.KvmException;
import io.guestmem.host.HostRegion;
import io.guestmem.host.HugePagePools;
import io.guestmem.memslot.Memslots;
import io.guestmem.mmu.MmuNotifier;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.sys.Capabilities;
import io.guestmem.sys.Posix;
import io.guestmem.sys.Rlimit;
import io.guestmem.mmu.DirtyLog;

/**
 * Runs in a child JVM started WITHOUT CAP_IPC_LOCK and with RLIMIT_MEMLOCK L (set by the parent test with
 * prlimit and setpriv; L a multiple of 8 MiB). Slots: L + 8 MiB, L/2, 3L/4 (and L/2 of hugetlb 2M). Prints {@code key=value} lines the parent parses. In package io.guestmem.lock for the
 * package-private test hook {@code MemslotLock.afterPin}. Argument: "hugetlb" to also run the hugetlb phase
 * (the parent raised the 2M pool).
 */
public final class LockLimitChild {
    static final long MiB = 1L << 20;

    public static void main(String[] args) {
        boolean hugetlb = args.length > 0 && args[0].equals("hugetlb");
        Memslots memslots = new Memslots();
        MmuNotifier notifier = new MmuNotifier(memslots);
        out("cap_ipc_lock", Capabilities.has(Capabilities.CAP_IPC_LOCK));
        Rlimit.Limit limit = Rlimit.getrlimit(Rlimit.RLIMIT_MEMLOCK);
        out("limit", limit.soft());
        out("baseline", vmLck());
        try (MemslotLock lock = new MemslotLock(notifier, DirtyLog.NONE);
             HostRegion big = HostRegion.anonymous(limit.soft() + 8 * MiB).create();
             HostRegion a = HostRegion.anonymous(limit.soft() / 2).create();
             HostRegion b = HostRegion.anonymous(limit.soft() / 4 * 3).create()) {
            memslots.setMemslot(0, 1, 0, 0x100000000L, big.size(), big.address());
            memslots.setMemslot(0, 2, 0, 0x200000000L, a.size(), a.address());
            memslots.setMemslot(0, 3, 0, 0x300000000L, b.size(), b.address());

            // 1. A slot over the limit: ENOMEM, nothing changed.
            out("over", attempt(() -> lock.lockMemslot(1, LockMode.READ_WRITE)));
            out("over_vmlck", vmLck());
            out("over_locked", lock.isLocked(1));

            // 2. Within the limit: locked.
            out("within", attempt(() -> lock.lockMemslot(2, LockMode.READ_WRITE)));
            out("within_vmlck", vmLck());
            MemlockStatus st = lock.status();
            out("within_headroom", st.headroomPages() * Posix.PAGE_SIZE);
            out("within_unlimited", st.unlimited());

            // 3. A second slot whose sum passes the limit: refused, the first stays locked.
            out("second", attempt(() -> lock.lockMemslot(3, LockMode.READ)));
            out("second_vmlck", vmLck());
            out("second_first_locked", lock.isLocked(2));
            out("second_locked", lock.isLocked(3));

            out("unlock_all", lock.unlockAll());
            out("unlock_all_vmlck", vmLck());

            // 4. The limit lowered between the check and the end (account_locked_vm): ENOMEM, rolled back.
            lock.afterPin = () -> {
                out("after_pin_vmlck", vmLck());
                Rlimit.setrlimit(Rlimit.RLIMIT_MEMLOCK, new Rlimit.Limit(limit.soft() / 4, limit.hard()));
            };
            out("end_check", attempt(() -> lock.lockMemslot(2, LockMode.READ_WRITE)));
            lock.afterPin = null;
            out("end_check_vmlck", vmLck());
            out("end_check_locked", lock.isLocked(2));
            Rlimit.setrlimit(Rlimit.RLIMIT_MEMLOCK, limit);

            // 5. hugetlb pages count in base pages although the kernel's VmLck ignores them.
            if (hugetlb) {
                try (HostRegion h = HostRegion.hugetlb(limit.soft() / 2, HugePagePools.size(2 * MiB)).create()) {
                    memslots.setMemslot(0, 4, 0, 0x400000000L, h.size(), h.address());
                    out("huge", attempt(() -> lock.lockMemslot(4, LockMode.READ_WRITE)));
                    out("huge_vmlck", vmLck());
                    out("huge_uncounted", lock.status().uncountedPages());
                    out("huge_then_anon", attempt(() -> lock.lockMemslot(3, LockMode.READ_WRITE)));
                    out("huge_then_anon_vmlck", vmLck());
                    lock.unlockAll();
                    memslots.deleteMemslot(0, 4);
                }
            }
            out("final_vmlck", vmLck());
        }
        out("done", true);
    }

    static String attempt(Runnable r) {
        try {
            r.run();
            return "OK";
        } catch (KvmException e) {
            System.out.println("# " + e.getMessage());
            return e.errno().name();
        }
    }

    static long vmLck() {
        return ProcStatus.self().vmLck();
    }

    static void out(String k, Object v) {
        System.out.println(k + "=" + v);
    }
}
