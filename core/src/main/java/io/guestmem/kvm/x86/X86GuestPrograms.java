package io.guestmem.kvm.x86;

/**
 * Tiny hand-assembled x86 guests. Each instruction is written out with its encoding, so the bytes can be
 * checked against the Intel SDM without an assembler. Immediates are little-endian.
 */
public final class X86GuestPrograms {
    private X86GuestPrograms() {}

    /** The 4 KiB x86 guest page: what the guests step by, independent of the host's page size. */
    public static final long GUEST_PAGE = 4096;

    /** (a) Real mode: {@code out port, value} (one byte), then {@code hlt}. Exits: IO(OUT, port, 1 byte), HLT. */
    public static X86Program outByteThenHlt(long loadGpa, int port, int value) {
        checkReal(loadGpa, 6);
        byte[] code = {
                (byte) 0xBA, lo(port), hi(port),   // mov dx, port       (B8+r iw: r=2 is DX)
                (byte) 0xB0, (byte) value,          // mov al, value      (B0+r ib: r=0 is AL)
                (byte) 0xEE,                        // out dx, al         (EE)
                (byte) 0xF4,                        // hlt                (F4)
        };
        return new X86Program("out " + Integer.toHexString(port) + " then hlt", X86Mode.REAL, loadGpa, code);
    }

    /**
     * (c) Real mode: store one byte at {@code gpa} (below 1 MiB), then {@code hlt}. Aimed at a read-only slot,
     * the store exits as MMIO (write) and memory stays unchanged.
     */
    public static X86Program storeByteReal(long loadGpa, long gpa, int value) {
        checkReal(loadGpa, 10);
        if (gpa < 0 || gpa >= 1 << 20) throw new IllegalArgumentException("real mode reaches only the first 1 MiB");
        int seg = (int) (gpa >>> 4), off = (int) (gpa & 0xf);
        byte[] code = {
                (byte) 0xB8, lo(seg), hi(seg),                  // mov ax, seg          (B8+r iw: r=0 is AX)
                (byte) 0x8E, (byte) 0xD8,                       // mov ds, ax           (8E /r: mod=11 reg=DS(3) rm=AX(0))
                (byte) 0xC6, 0x06, lo(off), hi(off), (byte) value, // mov byte [off], value (C6 /0 ib: mod=00 rm=110 = disp16)
                (byte) 0xF4,                                    // hlt
        };
        return new X86Program("store byte at " + Long.toHexString(gpa) + " (real mode)", X86Mode.REAL, loadGpa, code);
    }

    /** Flat 32-bit: store one byte at {@code gpa} (below 4 GiB), then {@code hlt}. */
    public static X86Program storeByteFlat32(long loadGpa, long gpa, int value) {
        checkFlat(gpa, 1);
        byte[] code = {
                (byte) 0xC6, 0x05, b(gpa, 0), b(gpa, 1), b(gpa, 2), b(gpa, 3), (byte) value,
                // mov byte [disp32], value  (C6 /0 ib: mod=00 rm=101 = disp32 in 32-bit addressing)
                (byte) 0xF4,                                    // hlt
        };
        return new X86Program("store byte at " + Long.toHexString(gpa) + " (flat32)", X86Mode.FLAT32, loadGpa, code);
    }

    /**
     * (b) Flat 32-bit: for each of {@code npages} 4 KiB pages from {@code startGpa}, write the u64
     * {@code (tag << 32) | gfn} ({@link #pageValue(long, int)}) at offset 0, then {@code hlt}. Every page gets a value
     * no other page has, so the host can tell which page the guest wrote (and that it was the guest: the
     * tag). Reaches any gpa below 4 GiB, so slots above 1 MiB are covered.
     */
    public static X86Program writeGfnToEveryPage(long loadGpa, long startGpa, long npages, int tag) {
        if (npages < 1 || npages > 0xffffffffL) throw new IllegalArgumentException("npages " + npages);
        if (startGpa % GUEST_PAGE != 0) throw new IllegalArgumentException("start gpa must be page-aligned");
        checkFlat(startGpa, npages * GUEST_PAGE);
        long n = npages;
        byte[] code = {
                (byte) 0xBE, b(startGpa, 0), b(startGpa, 1), b(startGpa, 2), b(startGpa, 3), // mov esi, startGpa (B8+6)
                (byte) 0xB9, b(n, 0), b(n, 1), b(n, 2), b(n, 3),                             // mov ecx, npages   (B8+1)
                (byte) 0xBA, b(tag, 0), b(tag, 1), b(tag, 2), b(tag, 3),                     // mov edx, tag      (B8+2)
                // loop:
                (byte) 0x89, (byte) 0xF0,                  // mov eax, esi        (89 /r: mod=11 reg=ESI rm=EAX)
                (byte) 0xC1, (byte) 0xE8, 0x0C,            // shr eax, 12         (C1 /5 ib): the gfn
                (byte) 0x89, 0x06,                         // mov [esi], eax      (89 /r: mod=00 reg=EAX rm=[ESI])
                (byte) 0x89, 0x56, 0x04,                   // mov [esi+4], edx    (89 /r: mod=01 reg=EDX rm=[ESI]+disp8)
                (byte) 0x81, (byte) 0xC6, 0x00, 0x10, 0x00, 0x00, // add esi, 0x1000 (81 /0 id: mod=11 rm=ESI)
                0x49,                                      // dec ecx             (48+r, 32-bit mode)
                0x75, (byte) 0xED,                         // jnz loop            (75 cb: -19 = back over 17+2 bytes)
                (byte) 0xF4,                               // hlt
        };
        return new X86Program("write gfn to " + npages + " pages from " + Long.toHexString(startGpa),
                X86Mode.FLAT32, loadGpa, code);
    }

    /**
     * Flat 32-bit: for each of {@code npages} 4 KiB pages from {@code startGpa}, compare the u64 at offset 0 with
     * {@link #pageValue pageValue(gfn, oldTag)} and count the pages that differ, write
     * {@code pageValue(gfn, newTag)} there, and at the end {@code out} the count (4 bytes) to {@code port}, then
     * {@code hlt}. A restored or migrated guest proves every page it had: count 0. Exits: IO(OUT, port), HLT.
     */
    public static X86Program checkAndRewriteEveryPage(long loadGpa, long startGpa, long npages, int oldTag, int newTag,
            int port) {
        if (npages < 1 || npages > 0xffffffffL) throw new IllegalArgumentException("npages " + npages);
        if (startGpa % GUEST_PAGE != 0) throw new IllegalArgumentException("start gpa must be page-aligned");
        checkFlat(startGpa, npages * GUEST_PAGE);
        long n = npages;
        byte[] code = {
                (byte) 0xBE, b(startGpa, 0), b(startGpa, 1), b(startGpa, 2), b(startGpa, 3), // mov esi, startGpa (B8+6)
                (byte) 0xB9, b(n, 0), b(n, 1), b(n, 2), b(n, 3),                             // mov ecx, npages   (B8+1)
                (byte) 0xBA, b(oldTag, 0), b(oldTag, 1), b(oldTag, 2), b(oldTag, 3),         // mov edx, oldTag   (B8+2)
                (byte) 0xBB, b(newTag, 0), b(newTag, 1), b(newTag, 2), b(newTag, 3),         // mov ebx, newTag   (B8+3)
                0x31, (byte) 0xFF,                         // xor edi, edi        (31 /r: mod=11 reg=EDI rm=EDI): the count
                // loop:
                (byte) 0x89, (byte) 0xF0,                  // mov eax, esi        (89 /r: mod=11 reg=ESI rm=EAX)
                (byte) 0xC1, (byte) 0xE8, 0x0C,            // shr eax, 12         (C1 /5 ib): the gfn
                0x39, 0x06,                                // cmp [esi], eax      (39 /r: mod=00 reg=EAX rm=[ESI])
                0x75, 0x05,                                // jne bad             (75 cb: over the next 5 bytes)
                0x39, 0x56, 0x04,                          // cmp [esi+4], edx    (39 /r: mod=01 reg=EDX rm=[ESI]+disp8)
                0x74, 0x01,                                // je ok               (74 cb: over the inc)
                // bad:
                0x47,                                      // inc edi             (40+r, 32-bit mode)
                // ok:
                (byte) 0x89, 0x06,                         // mov [esi], eax      (89 /r: mod=00 reg=EAX rm=[ESI])
                (byte) 0x89, 0x5E, 0x04,                   // mov [esi+4], ebx    (89 /r: mod=01 reg=EBX rm=[ESI]+disp8)
                (byte) 0x81, (byte) 0xC6, 0x00, 0x10, 0x00, 0x00, // add esi, 0x1000 (81 /0 id: mod=11 rm=ESI)
                0x49,                                      // dec ecx             (48+r, 32-bit mode)
                0x75, (byte) 0xE3,                         // jnz loop            (75 cb: -29 = back over 27+2 bytes)
                (byte) 0x89, (byte) 0xF8,                  // mov eax, edi        (89 /r: mod=11 reg=EDI rm=EAX)
                (byte) 0xBA, lo(port), hi(port), 0, 0,     // mov edx, port       (B8+2 id)
                (byte) 0xEF,                               // out dx, eax         (EF, 32-bit operand)
                (byte) 0xF4,                               // hlt
        };
        return new X86Program("check and rewrite " + npages + " pages from " + Long.toHexString(startGpa),
                X86Mode.FLAT32, loadGpa, code);
    }

    /**
     * Flat 32-bit: read the u32 at {@code gpa} and {@code out} it (4 bytes) to {@code port}, then {@code hlt}.
     * Shows the host what the guest sees at an address. Exits: IO(OUT, port, 4 bytes), HLT.
     */
    public static X86Program readU32ThenOut(long loadGpa, long gpa, int port) {
        checkFlat(gpa, 4);
        byte[] code = {
                (byte) 0xBA, lo(port), hi(port), 0, 0,            // mov edx, port      (B8+2 id)
                (byte) 0xA1, b(gpa, 0), b(gpa, 1), b(gpa, 2), b(gpa, 3), // mov eax, [moffs32] (A1)
                (byte) 0xEF,                                      // out dx, eax        (EF, 32-bit operand)
                (byte) 0xF4,                                      // hlt
        };
        return new X86Program("read u32 at " + Long.toHexString(gpa) + " then out", X86Mode.FLAT32, loadGpa, code);
    }

    /** The u64 {@link #writeGfnToEveryPage} leaves at offset 0 of the page with this gfn. */
    public static long pageValue(long gfn, int tag) {
        return ((long) tag << 32) | (gfn & 0xffffffffL);
    }

    /**
     * A flat GDT (24 bytes): null, code at selector 0x08 (base 0, limit 4 GiB, 32-bit, execute/read,
     * accessed), data at 0x10 (read/write, accessed). The flat32 mode loads the same descriptors into the
     * hidden segment state, so the table in memory agrees with what the CPU uses.
     */
    public static byte[] flatGdt() {
        return new byte[] {
                0, 0, 0, 0, 0, 0, 0, 0,                                   // 0x00 null descriptor
                (byte) 0xFF, (byte) 0xFF, 0, 0, 0, (byte) 0x9B, (byte) 0xCF, 0, // 0x08 code: limit 0xfffff, P DPL0 S type=0xB, G D
                (byte) 0xFF, (byte) 0xFF, 0, 0, 0, (byte) 0x93, (byte) 0xCF, 0, // 0x10 data: type=0x3 (read/write, accessed)
        };
    }

    public static final int CODE_SELECTOR = 0x08, DATA_SELECTOR = 0x10;

    private static void checkReal(long loadGpa, int len) {
        if (loadGpa < 0 || loadGpa + len > 0x10000)
            throw new IllegalArgumentException("real-mode code runs with CS=0: load it below 64 KiB");
    }

    private static void checkFlat(long gpa, long len) {
        if (gpa < 0 || gpa + len > 1L << 32)
            throw new IllegalArgumentException("flat 32-bit guests reach only the first 4 GiB");
    }

    private static byte lo(int v) {
        return (byte) v;
    }

    private static byte hi(int v) {
        return (byte) (v >>> 8);
    }

    private static byte b(long v, int i) {
        return (byte) (v >>> (8 * i));
    }
}
