package io.guestmem.it;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

/**
 * Every closeable object of the library, used after close: an IllegalStateException each time (an open
 * GuestMemory whose slot lost its region answers with its typed access error), naming the object and the call
 * where the library words it, never a crash. The uses run
 * in a child JVM, so that a use that touched unmapped memory would fail this test (exit status of a signal)
 * instead of killing the test run.
 */
@ExtendWith(LeakGuard.class)
class UseAfterCloseTest {
    @Test
    void everyUseAfterCloseThrowsAndNothingCrashes() {
        ChildJvm.Result r = ChildJvm.run(List.of(), UseAfterCloseChild.class);
        System.out.println(r.output());
        assertFalse(r.crashed(), "the child JVM died by a signal (exit " + r.exit() + "):\n" + r.output());
        assertEquals(0, r.exit(), r.output());
        assertTrue(r.output().contains("DONE"), r.output());
        List<String> checks = r.lines("CHECK ");
        long ok = checks.stream().filter(l -> l.contains(" OK ")).count();
        List<String> notIse = checks.stream().filter(l -> l.contains(" OK ") && !l.contains(" OK IllegalStateException")).toList();
        if (!notIse.isEmpty()) System.out.println("threw a typed access error rather than IllegalStateException:\n" + String.join("\n", notIse));
        ReliabilityReport.put("use after close", "uses after close (regions, guest memory, pagemap/kpageflags, follow_pfn, "
                + "memslot lock, VM, vCPU, guest_memfd) that threw / crashed the JVM", ok + " of " + checks.size() + " / 0");
        // The KVM objects (VM, vCPU, guest_memfd) are checked only where this machine has a /dev/kvm.
        boolean kvm = java.nio.file.Files.exists(java.nio.file.Path.of("/dev/kvm"));
        if (!kvm) System.out.println("INFO no /dev/kvm on this machine: VM, vCPU and guest_memfd uses after close not checked");
        assertTrue(checks.size() >= (kvm ? 40 : 34), checks.size() + " checks:\n" + r.output());
        // Only GuestMemory may answer with its typed access error (NO_HOST_MEMORY for a slot whose region closed,
        // the memory itself open); a closed GuestMemory, and everything else, throws IllegalStateException.
        List<String> foreign = notIse.stream().filter(l -> !l.contains("CHECK guest memory ")).toList();
        assertEquals(List.of(), foreign, "uses after close that threw something other than IllegalStateException");
        assertEquals(checks.size(), ok, "a use after close that did not throw (IllegalStateException, or GuestMemory's typed access error):\n" + r.output());
    }
}
