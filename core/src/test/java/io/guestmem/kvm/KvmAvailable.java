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
}
