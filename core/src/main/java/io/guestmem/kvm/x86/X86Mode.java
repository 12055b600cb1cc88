package io.guestmem.kvm.x86;

/** The CPU mode a guest program is assembled for. */
public enum X86Mode {
    /** 16-bit real mode: segment*16 + offset, so only the first 1 MiB (+64 KiB) is reachable. */
    REAL,
    /** 32-bit protected mode with flat 4 GiB code and data segments, paging off: gpa = linear address below 4 GiB. */
    FLAT32
}
