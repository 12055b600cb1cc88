package io.guestmem.it;

import io.guestmem.host.HostRegion;
import io.guestmem.procfs.ProcStatus;
import io.guestmem.sys.Capabilities;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Rlimit;
import io.guestmem.sys.SyscallException;
import java.util.List;
import java.util.function.Supplier;

/**
 * Child JVM of {@link FaultInjectionTest}: injects faults that must not happen in the test JVM and prints one
 * line per fault: {@code FAULT <name> <exception> <errno> leaks=<n> <what leaked> | <message>}, or
 * {@code UNEXPECTED <name> ...} when the call did not fail as it should. Exit 0 unless something crashed.
 */
public final class FaultChild {
    public static void main(String[] args) {
        switch (args[0]) {
            case "as" -> addressSpace();
            case "memlock" -> memlock();
            default -> throw new IllegalArgumentException(args[0]);
        }
        System.out.println("DONE");
    }

    /** mmap under a lowered RLIMIT_AS: the reservation fails, nothing (mapping, memfd) is left. */
    static void addressSpace() {
        long vm = ProcStatus.self().vmSize();
        Rlimit.Limit was = Rlimit.getrlimit(Rlimit.RLIMIT_AS);
        // Room for the JVM to go on (threads, JIT) but not for a 4 GiB region.
        Rlimit.setrlimit(Rlimit.RLIMIT_AS, new Rlimit.Limit(vm + (512L << 20), was.hard()));
        System.out.println("INFO RLIMIT_AS " + Fmt.size(vm + (512L << 20)) + " (VmSize " + Fmt.size(vm) + ")");
        inject("rlimit-as anonymous", () -> HostRegion.anonymous(4L << 30).create());
        inject("rlimit-as memfd", () -> HostRegion.memfd(4L << 30).name("fault-as").create());
        inject("rlimit-as thp", () -> HostRegion.thp(4L << 30).create());
        Rlimit.setrlimit(Rlimit.RLIMIT_AS, was);
    }

    /** mlock beyond RLIMIT_MEMLOCK without CAP_IPC_LOCK: creation fails, VmLck and mappings are as before. */
    static void memlock() {
        System.out.println("INFO CAP_IPC_LOCK=" + Capabilities.has(Capabilities.CAP_IPC_LOCK) + " RLIMIT_MEMLOCK="
                + Rlimit.getrlimit(Rlimit.RLIMIT_MEMLOCK));
        inject("rlimit-memlock mlock", () -> HostRegion.anonymous(4L << 20).mlock().create());
        inject("rlimit-memlock mlock-onfault", () -> HostRegion.anonymous(4L << 20).mlockOnFault().create());
        inject("rlimit-memlock memfd mlock", () -> HostRegion.memfd(4L << 20).name("fault-memlock").mlock().create());
        // Within the limit it works, and closing gives the lock back.
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        try (HostRegion r = HostRegion.anonymous(256L << 10).mlock().create()) {
            System.out.println("OK within-limit VmLck=" + ProcStatus.self().vmLck() + " region=" + r.size());
        }
        List<String> leaks = LeakGuard.leaks(before, 0);
        System.out.println("OK within-limit-closed leaks=" + leaks.size() + " " + leaks);
    }

    static void inject(String name, Supplier<HostRegion> call) {
        LeakGuard.Snapshot before = LeakGuard.snapshot();
        try {
            HostRegion r = call.get();
            r.close();
            System.out.println("UNEXPECTED " + name + " succeeded: " + r);
        } catch (SyscallException e) {
            List<String> leaks = LeakGuard.leaks(before, 0);
            System.out.println("FAULT " + name + " " + e.getClass().getSimpleName() + " " + e.errnoName() + " leaks="
                    + leaks.size() + " " + leaks + " | " + e.getMessage());
        } catch (RuntimeException e) {
            System.out.println("UNEXPECTED " + name + " " + e);
        }
    }
}
