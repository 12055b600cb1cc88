package io.guestmem.kvm;

import java.util.List;

/** A guest did not reach HLT: it stopped with an exit it cannot continue from, or ran past its exit budget. */
public class GuestRunException extends RuntimeException {
    private final List<VcpuExit> exits;

    public GuestRunException(String message, List<VcpuExit> exits) {
        super(message + "; exits: " + exits);
        this.exits = List.copyOf(exits);
    }

    /** The exits seen, the last one the one that stopped the run. */
    public List<VcpuExit> exits() {
        return exits;
    }
}
