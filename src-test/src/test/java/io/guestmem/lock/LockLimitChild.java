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
 * prlimit and setpriv; L a multiple of 8 MiB). Slots: L + 8 MiB, L/2, 3L/4 of writable memory (pinned long-term),
 * 3L/4 and L/4 of read-only memory (mlocked), and L/2 of hugetlb 2M. Prints {@code key=value} lines the parent
 * parses (kernel messages as {@code # ...}). In package io.guestmem.lock for the
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
        long l = limit.soft();
        out("limit", l);
        out("baseline", vmLck());
        out("pin_baseline", vmPin());
        try (MemslotLock lock = new MemslotLock(notifier, DirtyLog.NONE);
             HostRegion big = HostRegion.anonymous(l + 8 * MiB).create();
             HostRegion a = HostRegion.anonymous(l / 2).create();
             HostRegion b = HostRegion.anonymous(l / 4 * 3).create();
             HostRegion c = HostRegion.anonymous(l / 4 * 3).create();
             HostRegion d = HostRegion.anonymous(l / 4).create()) {
            readOnly(c);
            readOnly(d);
            memslots.setMemslot(0, 1, 0, 0x100000000L, big.size(), big.address());
            memslots.setMemslot(0, 2, 0, 0x200000000L, a.size(), a.address());
            memslots.setMemslot(0, 3, 0, 0x300000000L, b.size(), b.address());
            memslots.setMemslot(0, 5, 0, 0x500000000L, c.size(), c.address());
            memslots.setMemslot(0, 6, 0, 0x600000000L, d.size(), d.address());

            // 1. A slot over the limit, pinned long-term: the kernel's own ENOMEM (io_uring_register), nothing changed.
            attempt("over", () -> lock.lockMemslot(1, LockMode.READ_WRITE));
            out("over_vmpin", vmPin());
            out("over_vmlck", vmLck());
            out("over_locked", lock.isLocked(1));

            // 2. Within the limit: pinned, VmPin grows, VmLck does not.
            attempt("within", () -> lock.lockMemslot(2, LockMode.READ_WRITE));
            out("within_kind", lock.pinKind(0, 2));
            out("within_vmpin", vmPin());
            out("within_vmlck", vmLck());
            MemlockStatus st = lock.status();
            out("within_headroom", st.headroomPages() * Posix.PAGE_SIZE);
            out("within_unlimited", st.unlimited());

            // 3. A second pinned slot whose sum passes the limit: the kernel refuses it, the first stays locked.
            attempt("second", () -> lock.lockMemslot(3, LockMode.READ));
            out("second_vmpin", vmPin());
            out("second_first_locked", lock.isLocked(2));
            out("second_locked", lock.isLocked(3));

            // 4. An mlocked slot (read-only memory) shares the budget with the pinned one: L/2 + 3L/4 > L is
            //    try_rlimit_memlock's ENOMEM; L/2 + L/4 fits.
            attempt("joint", () -> lock.lockMemslot(5, LockMode.READ));
            out("joint_vmlck", vmLck());
            out("joint_locked", lock.isLocked(5));
            attempt("joint_fit", () -> lock.lockMemslot(6, LockMode.READ));
            out("joint_fit_kind", lock.pinKind(0, 6));
            out("joint_fit_vmlck", vmLck());

            out("unlock_all", lock.unlockAll());
            out("unlock_all_vmpin", vmPin());
            out("unlock_all_vmlck", vmLck());

            // 5. The limit lowered between pinning and the end (account_locked_vm): ENOMEM, rolled back.
            lock.afterPin = () -> {
                out("after_pin_vmpin", vmPin());
                Rlimit.setrlimit(Rlimit.RLIMIT_MEMLOCK, new Rlimit.Limit(l / 4, limit.hard()));
            };
            attempt("end_check", () -> lock.lockMemslot(2, LockMode.READ_WRITE));
            lock.afterPin = null;
            out("end_check_vmpin", vmPin());
            out("end_check_locked", lock.isLocked(2));
            Rlimit.setrlimit(Rlimit.RLIMIT_MEMLOCK, limit);

            // 6. hugetlb: pinned long-term it counts in VmPin; mlocked (read-only) it is not in VmLck and is
            //    charged in base pages anyway.
            if (hugetlb) {
                try (HostRegion h = HostRegion.hugetlb(l / 2, HugePagePools.size(2 * MiB)).create()) {
                    memslots.setMemslot(0, 4, 0, 0x400000000L, h.size(), h.address());
                    attempt("huge", () -> lock.lockMemslot(4, LockMode.READ_WRITE));
                    out("huge_kind", lock.pinKind(0, 4));
                    out("huge_vmpin", vmPin());
                    attempt("huge_then_anon", () -> lock.lockMemslot(3, LockMode.READ_WRITE));
                    lock.unlockAll();
                    io.guestmem.sys.Mman.mprotect(h.address(), h.size(), io.guestmem.sys.Mman.PROT_READ);
                    attempt("huge_ro", () -> lock.lockMemslot(4, LockMode.READ));
                    out("huge_ro_kind", lock.pinKind(0, 4));
                    out("huge_ro_vmlck", vmLck());
                    out("huge_ro_uncounted", lock.status().uncountedPages());
                    attempt("huge_ro_then_ro", () -> lock.lockMemslot(5, LockMode.READ));
                    out("huge_ro_then_ro_vmlck", vmLck());
                    lock.unlockAll();
                    memslots.deleteMemslot(0, 4);
                }
            }
            out("final_vmlck", vmLck());
            out("final_vmpin", vmPin());
        }
        out("done", true);
    }

    /** Writes every page (no zero page), then maps the region read-only: only mlock can hold it. */
    static void readOnly(HostRegion r) {
        for (long off = 0; off < r.size(); off += Posix.PAGE_SIZE) {
            r.segment().set(java.lang.foreign.ValueLayout.JAVA_LONG, off, off + 1);
        }
        io.guestmem.sys.Mman.mprotect(r.address(), r.size(), io.guestmem.sys.Mman.PROT_READ);
    }

    /**
     * Prints {@code key=OK} or {@code key=<errno>}, and for a failure {@code key_by=kernel} when the refusal is
     * the kernel's own (a {@code SyscallException} cause, e.g. io_uring_register's ENOMEM) or {@code library}.
     */
    static void attempt(String key, Runnable r) {
        try {
            r.run();
            out(key, "OK");
        } catch (KvmException e) {
            System.out.println("# " + e.getMessage().replace('\n', ' '));
            out(key, e.errno().name());
            out(key + "_by", e.getCause() instanceof io.guestmem.sys.SyscallException ? "kernel" : "library");
        }
    }

    static long vmLck() {
        return ProcStatus.self().vmLck();
    }

    static long vmPin() {
        return ProcStatus.self().vmPin();
    }

    static void out(String k, Object v) {
        System.out.println(k + "=" + v);
    }
}
