package io.guestmem.kvm;

import java.io.File;
import org.junit.jupiter.api.Assumptions;

/** Skips (with a printed reason) only where /dev/kvm is really absent or not usable by this user. */
public final class KvmAvailable {
    private KvmAvailable() {}

    public static void assume() {
        File f = new File("/dev/kvm");
        String why = !f.exists() ? "/dev/kvm does not exist" : !f.canRead() || !f.canWrite() ? "/dev/kvm is not read-write for this user" : null;
        if (why != null) System.out.println("SKIP (KVM tests): " + why);
        Assumptions.assumeTrue(why == null, why);
    }

    /** For genuinely x86-only tests (real mode, x86 registers): skips elsewhere with the reason printed. */
    public static void assumeX86(String what) {
        assume();
        boolean x86 = io.guestmem.sys.Arch.CURRENT.isX86();
        String why = "x86-only (" + what + "): this is " + io.guestmem.sys.Arch.CURRENT.name()
                + "; the architecture-neutral counterpart runs through GuestCpu";
        if (!x86) System.out.println("SKIP: " + why);
        Assumptions.assumeTrue(x86, why);
    }
}
