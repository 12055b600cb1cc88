package io.guestmem.kvm.arm64;

/**
 * Tiny hand-encoded A64 guests for an EL1 vCPU with the MMU off (gpa = va). Each instruction is written out
 * with its 32-bit encoding (little-endian in memory) and the fields that make it, so it can be checked against
 * the Arm ARM without an assembler. Data accesses with the MMU off are Device-nGnRnE: every load and store
 * here is naturally aligned. Each program ends with PSCI SYSTEM_OFF ({@code hvc #0}, x0 = 0x84000008), which
 * KVM reports as KVM_EXIT_SYSTEM_EVENT type SHUTDOWN when the vCPU was initialised with PSCI 0.2.
 */
public final class Arm64GuestPrograms {
    private Arm64GuestPrograms() {}

    /** The 4 KiB guest page the programs step by (like x86), whatever the host's page size (4K or 16K here). */
    public static final long GUEST_PAGE = 4096;

    /** PSCI 0.2 SYSTEM_OFF function id (SMC32 fast call 0x8400_0008). */
    public static final long PSCI_SYSTEM_OFF = 0x84000008L;

    /** Where {@link #readAndReport} stores what it read: a gpa no slot backs, so the store exits as MMIO write. */
    public static final long REPORT_GPA = 1L << 36;

    // Encoders: each returns one A64 instruction word. The fixed patterns are from the Arm ARM's encoding index.

    /** MOVZ Xd, #imm16, LSL #(16*hw): sf=1 opc=10 100101 hw imm16 Rd = 0xD2800000 | hw<<21 | imm16<<5 | Rd. */
    static int movz(int rd, int imm16, int hw) {
        return 0xD2800000 | (hw << 21) | ((imm16 & 0xffff) << 5) | rd;
    }

    /** MOVK Xd, #imm16, LSL #(16*hw): sf=1 opc=11 100101 hw imm16 Rd = 0xF2800000 | hw<<21 | imm16<<5 | Rd. */
    static int movk(int rd, int imm16, int hw) {
        return 0xF2800000 | (hw << 21) | ((imm16 & 0xffff) << 5) | rd;
    }

    /** MOVZ Wd, #imm16: sf=0 opc=10 100101 hw=0 imm16 Rd = 0x52800000 | imm16<<5 | Rd. */
    static int movzW(int rd, int imm16) {
        return 0x52800000 | ((imm16 & 0xffff) << 5) | rd;
    }

    /** The 64-bit {@code value} into Xd: MOVZ of bits 15:0, then MOVK of bits 31:16, 47:32, 63:48 (always 4 words). */
    static int[] mov64(int rd, long value) {
        return new int[] {
                movz(rd, (int) value, 0),
                movk(rd, (int) (value >>> 16), 1),
                movk(rd, (int) (value >>> 32), 2),
                movk(rd, (int) (value >>> 48), 3)};
    }

    /** LSR X3, X0, #12 = UBFM X3, X0, #12, #63: 0xD3400000 | immr=12 <<16 | imms=63 <<10 | Rn=0 <<5 | Rd=3. */
    static final int LSR_X3_X0_12 = 0xD34CFC03;
    /** ORR X3, X2, X3 (shifted register, LSL #0): 0xAA000000 | Rm=3 <<16 | Rn=2 <<5 | Rd=3. */
    static final int ORR_X3_X2_X3 = 0xAA030043;
    /** STR X3, [X0] (unsigned offset 0, 64-bit): 0xF9000000 | imm12=0 | Rn=0 <<5 | Rt=3. */
    static final int STR_X3_X0 = 0xF9000003;
    /** ADD X0, X0, #1, LSL #12 (+4096): 0x91000000 | sh=1 <<22 | imm12=1 <<10 | Rn=0 <<5 | Rd=0. */
    static final int ADD_X0_X0_4096 = 0x91400400;
    /** SUBS X1, X1, #1: 0xF1000000 | imm12=1 <<10 | Rn=1 <<5 | Rd=1. */
    static final int SUBS_X1_X1_1 = 0xF1000421;
    /** B.NE back 5 instructions: 0x54000000 | imm19=-5 (0x7FFFB) <<5 | cond NE=0001. */
    static final int BNE_MINUS_5 = 0x54FFFF61;
    /** STRB W1, [X0] (unsigned offset 0): 0x39000000 | Rn=0 <<5 | Rt=1. */
    static final int STRB_W1_X0 = 0x39000001;
    /** LDR W1, [X0] (unsigned offset 0, 32-bit): 0xB9400000 | Rn=0 <<5 | Rt=1. */
    static final int LDR_W1_X0 = 0xB9400001;
    /** STR W1, [X2] (unsigned offset 0, 32-bit; no writeback, so the abort is decodable: ESR ISV=1): 0xB9000000 | Rn=2 <<5 | Rt=1. */
    static final int STR_W1_X2 = 0xB9000041;
    /** ORR X5, X2, X3 (shifted register, LSL #0): 0xAA000000 | Rm=3 <<16 | Rn=2 <<5 | Rd=5. */
    static final int ORR_X5_X2_X3 = 0xAA030045;
    /** ORR X3, X4, X3 (shifted register, LSL #0): 0xAA000000 | Rm=3 <<16 | Rn=4 <<5 | Rd=3. */
    static final int ORR_X3_X4_X3 = 0xAA030083;
    /** LDR X7, [X0] (unsigned offset 0, 64-bit): 0xF9400000 | Rn=0 <<5 | Rt=7. */
    static final int LDR_X7_X0 = 0xF9400007;
    /** CMP X7, X5 = SUBS XZR, X7, X5 (shifted register): 0xEB000000 | Rm=5 <<16 | Rn=7 <<5 | Rd=31. */
    static final int CMP_X7_X5 = 0xEB0500FF;
    /** CINC X6, X6, NE = CSINC X6, X6, X6, EQ: 0x9A800400 | Rm=6 <<16 | cond EQ=0000 <<12 | Rn=6 <<5 | Rd=6. */
    static final int CINC_X6_X6_NE = 0x9A8604C6;
    /** B.NE back 9 instructions: 0x54000000 | imm19=-9 (0x7FFF7) <<5 | cond NE=0001. */
    static final int BNE_MINUS_9 = 0x54FFFEE1;
    /** STR W6, [X2] (unsigned offset 0, 32-bit): 0xB9000000 | Rn=2 <<5 | Rt=6. */
    static final int STR_W6_X2 = 0xB9000046;
    /** HVC #0: 0xD4000002 (imm16=0 in bits 20:5). */
    static final int HVC_0 = 0xD4000002;
    /** B . (branch to itself, imm26=0): 0x14000000; never reached once SYSTEM_OFF stops the vCPU. */
    static final int B_SELF = 0x14000000;

    /** The clean end: x0 = PSCI SYSTEM_OFF, {@code hvc #0}, then {@code b .}. */
    static int[] systemOff() {
        return new int[] {
                movz(0, (int) PSCI_SYSTEM_OFF, 0),          // movz x0, #0x0008            = 0xD2800100
                movk(0, (int) (PSCI_SYSTEM_OFF >>> 16), 1), // movk x0, #0x8400, lsl #16   = 0xF2B08000
                HVC_0,                                      // hvc #0
                B_SELF};                                    // b .
    }

    /**
     * For each of {@code npages} 4 KiB pages from {@code startGpa}, store the u64 {@code (tag << 32) | gfn}
     * (gfn = gpa >> 12) at offset 0, then SYSTEM_OFF. The same values as the x86 guest.
     */
    public static Arm64Program writeGfnToEveryPage(long loadGpa, long startGpa, long npages, int tag) {
        if (npages < 1 || npages > 0xffffffffL) throw new IllegalArgumentException("npages " + npages);
        if (startGpa % GUEST_PAGE != 0) throw new IllegalArgumentException("start gpa must be 4 KiB-aligned");
        if (startGpa < 0 || startGpa + npages * GUEST_PAGE > 1L << 44)
            throw new IllegalArgumentException("the gfn is stored as 32 bits: stay below 16 TiB");
        return new Arm64Program("write gfn to " + npages + " pages from " + Long.toHexString(startGpa), loadGpa, concat(
                mov64(0, startGpa),                  // x0 = startGpa (movz + 3 movk)
                mov64(1, npages),                    // x1 = npages
                new int[] {
                        movz(2, tag, 2),             // movz x2, #tag[15:0], lsl #32
                        movk(2, tag >>> 16, 3),      // movk x2, #tag[31:16], lsl #48: x2 = tag << 32
                        // loop:
                        LSR_X3_X0_12,                // lsr  x3, x0, #12      the gfn
                        ORR_X3_X2_X3,                // orr  x3, x2, x3       (tag << 32) | gfn
                        STR_X3_X0,                   // str  x3, [x0]         aligned u64 store
                        ADD_X0_X0_4096,              // add  x0, x0, #1, lsl #12
                        SUBS_X1_X1_1,                // subs x1, x1, #1
                        BNE_MINUS_5},                // b.ne loop
                systemOff()));
    }

    /**
     * For each of {@code npages} 4 KiB pages from {@code startGpa}, compare the u64 at offset 0 with
     * {@code (oldTag << 32) | gfn}, count the pages that differ, store {@code (newTag << 32) | gfn} there; then
     * store the count (u32) to {@link #REPORT_GPA} (an MMIO write exit) and SYSTEM_OFF. The x86 guest's check.
     */
    public static Arm64Program checkAndRewriteEveryPage(long loadGpa, long startGpa, long npages, int oldTag, int newTag) {
        if (npages < 1 || npages > 0xffffffffL) throw new IllegalArgumentException("npages " + npages);
        if (startGpa % GUEST_PAGE != 0) throw new IllegalArgumentException("start gpa must be 4 KiB-aligned");
        if (startGpa < 0 || startGpa + npages * GUEST_PAGE > 1L << 44)
            throw new IllegalArgumentException("the gfn is stored as 32 bits: stay below 16 TiB");
        return new Arm64Program("check and rewrite " + npages + " pages from " + Long.toHexString(startGpa), loadGpa, concat(
                mov64(0, startGpa),                  // x0 = startGpa
                mov64(1, npages),                    // x1 = npages
                new int[] {
                        movz(2, oldTag, 2),          // movz x2, #oldTag[15:0], lsl #32
                        movk(2, oldTag >>> 16, 3),   // movk x2, #oldTag[31:16], lsl #48: x2 = oldTag << 32
                        movz(4, newTag, 2),          // movz x4, #newTag[15:0], lsl #32
                        movk(4, newTag >>> 16, 3),   // movk x4, #newTag[31:16], lsl #48: x4 = newTag << 32
                        movz(6, 0, 0),               // movz x6, #0           the count
                        // loop:
                        LSR_X3_X0_12,                // lsr  x3, x0, #12      the gfn
                        ORR_X5_X2_X3,                // orr  x5, x2, x3       the value expected
                        LDR_X7_X0,                   // ldr  x7, [x0]         the value there
                        CMP_X7_X5,                   // cmp  x7, x5
                        CINC_X6_X6_NE,               // cinc x6, x6, ne
                        ORR_X3_X4_X3,                // orr  x3, x4, x3       the new value
                        STR_X3_X0,                   // str  x3, [x0]
                        ADD_X0_X0_4096,              // add  x0, x0, #1, lsl #12
                        SUBS_X1_X1_1,                // subs x1, x1, #1
                        BNE_MINUS_9},                // b.ne loop
                mov64(2, REPORT_GPA),                // x2 = REPORT_GPA
                new int[] {STR_W6_X2},               // str w6, [x2]   -> KVM_EXIT_MMIO write of the count
                systemOff()));
    }

    /** Store the byte {@code value} at {@code gpa}, then SYSTEM_OFF. At a read-only slot: an MMIO write exit. */
    public static Arm64Program storeByte(long loadGpa, long gpa, int value) {
        return new Arm64Program("store byte at " + Long.toHexString(gpa), loadGpa, concat(
                mov64(0, gpa),                       // x0 = gpa
                new int[] {
                        movzW(1, value & 0xff),      // movz w1, #value
                        STRB_W1_X0},                 // strb w1, [x0]
                systemOff()));
    }

    /**
     * Load the u32 at {@code gpa} (4-byte aligned) and store it to {@link #REPORT_GPA}, which no slot backs:
     * KVM exits with MMIO write (4 bytes, the value), then SYSTEM_OFF.
     */
    public static Arm64Program readAndReport(long loadGpa, long gpa) {
        if (gpa % 4 != 0) throw new IllegalArgumentException("MMU off: the u32 load must be 4-byte aligned");
        return new Arm64Program("read u32 at " + Long.toHexString(gpa) + " then report", loadGpa, concat(
                mov64(0, gpa),                       // x0 = gpa
                mov64(2, REPORT_GPA),                // x2 = REPORT_GPA
                new int[] {
                        LDR_W1_X0,                   // ldr w1, [x0]
                        STR_W1_X2},                  // str w1, [x2]   -> KVM_EXIT_MMIO write
                systemOff()));
    }

    private static int[] concat(int[]... parts) {
        int n = 0;
        for (int[] p : parts) n += p.length;
        int[] out = new int[n];
        int i = 0;
        for (int[] p : parts) {
            System.arraycopy(p, 0, out, i, p.length);
            i += p.length;
        }
        return out;
    }
}
