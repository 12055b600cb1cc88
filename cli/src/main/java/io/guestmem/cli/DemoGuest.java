package io.guestmem.cli;

import io.guestmem.access.GuestMemory;
import io.guestmem.kvm.GuestCpu;
import io.guestmem.kvm.GuestProgram;
import io.guestmem.kvm.Vcpu;
import io.guestmem.kvm.VcpuExit;
import io.guestmem.memslot.Memslot;
import java.util.List;

/**
 * The demo's guest programs (the library's {@link GuestCpu}), loaded at {@link #CODE_GPA} of the boot slot and run
 * on one vCPU: the demo's first guest writes {@link GuestCpu#pageValue pageValue(gfn, tag)} into every 4 KiB guest
 * page of a slot; a restored or migrated guest checks every page for the value it had and writes a new one.
 */
final class DemoGuest {
    /** Slot 0 is the boot slot: the guest's code and (x86) GDT, at {@link #CODE_GPA}. */
    static final int BOOT_SLOT = 0;
    static final long CODE_GPA = 0x1000, BOOT_SIZE = 64 << 10;
    /**
     * A u64 in the boot slot that no guest program touches: the "device state" a migration carries with the memory
     * (the tag the source's guest wrote last).
     */
    static final long STATE_GPA = 0x8000;
    /** "memn": the tag of the values the demo's first guest writes. */
    static final int TAG = 0x6e6d656d;
    private static final int MAX_EXITS = 64;

    private final GuestCpu cpu = GuestCpu.current();
    private final GuestMemory memory;
    private final Vcpu vcpu;

    DemoGuest(GuestMemory memory, Vcpu vcpu) {
        this.memory = memory;
        this.vcpu = vcpu;
    }

    /** 4 KiB guest pages in {@code slot}. */
    static long guestPages(Memslot slot, long pageSize) {
        return slot.npages() * pageSize / GuestCpu.GUEST_PAGE;
    }

    /** Writes {@code pageValue(gfn, tag)} into every guest page of {@code slot}; returns the exits before the clean end. */
    List<VcpuExit> write(Memslot slot, long pageSize, int tag) {
        return run(cpu.writeGfnToEveryPage(CODE_GPA, slot.baseGfn() * pageSize, guestPages(slot, pageSize), tag));
    }

    /**
     * Checks every guest page of {@code slot} for {@code pageValue(gfn, oldTag)} and writes {@code pageValue(gfn,
     * newTag)} there; returns the count of pages the guest found without the old value.
     */
    long checkAndRewrite(Memslot slot, long pageSize, int oldTag, int newTag) {
        List<VcpuExit> exits = run(cpu.checkAndRewriteEveryPage(CODE_GPA, slot.baseGfn() * pageSize,
                guestPages(slot, pageSize), oldTag, newTag));
        return cpu.reported(exits).orElseThrow(() -> new IllegalStateException(
                "the " + cpu.arch() + " guest ended without reporting its count; exits: " + exits));
    }

    /** Guest pages of {@code slot} whose first u64 is not {@code pageValue(gfn, tag)}, as the host reads them. */
    long hostMismatches(Memslot slot, long pageSize, int tag) {
        long wrong = 0, start = slot.baseGfn() * pageSize;
        for (long i = 0, n = guestPages(slot, pageSize); i < n; i++) {
            long gpa = start + i * GuestCpu.GUEST_PAGE;
            if (memory.readU64(gpa) != GuestCpu.pageValue(gpa / GuestCpu.GUEST_PAGE, tag)) wrong++;
        }
        return wrong;
    }

    /** Loads {@code p} and runs it to its clean end; returns the exits before the end. */
    private List<VcpuExit> run(GuestProgram p) {
        for (GuestProgram.Chunk c : p.image()) memory.write(c.gpa(), c.bytes());
        return cpu.runToCompletion(vcpu, p, MAX_EXITS);
    }
}
