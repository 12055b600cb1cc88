package io.guestmem.kvm.arm64;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/**
 * The encoders produce the words GNU as 2.40 (binutils-aarch64-linux-gnu) assembled for the same instructions
 * (cross-checked once by hand with objdump -d; the words are written out here, not generated). Pure
 * arithmetic: runs on every architecture.
 */
class Arm64GuestProgramsTest {
    @Test
    void encodersMatchTheAssembler() {
        assertEquals(0xD2800100, Arm64GuestPrograms.movz(0, 0x0008, 0));      // movz x0, #0x8
        assertEquals(0xF2B08000, Arm64GuestPrograms.movk(0, 0x8400, 1));      // movk x0, #0x8400, lsl #16
        assertEquals(0xF2C24680, Arm64GuestPrograms.movk(0, 0x1234, 2));      // movk x0, #0x1234, lsl #32
        assertEquals(0xF2E24680, Arm64GuestPrograms.movk(0, 0x1234, 3));      // movk x0, #0x1234, lsl #48
        assertEquals(0xD2C008E2, Arm64GuestPrograms.movz(2, 0x47, 2));        // movz x2, #0x47, lsl #32
        assertEquals(0xF2E00022, Arm64GuestPrograms.movk(2, 0x1, 3));         // movk x2, #0x1, lsl #48
        assertEquals(0x52801DC1, Arm64GuestPrograms.movzW(1, 0xee));          // movz w1, #0xee
    }

    @Test
    void programsEndWithPsciSystemOff() {
        int[] w = Arm64GuestPrograms.storeByte(0x1000, 0x2000, 0xee).words();
        assertArrayEquals(new int[] {0xD2800100, 0xF2B08000, 0xD4000002, 0x14000000},
                java.util.Arrays.copyOfRange(w, w.length - 4, w.length));
        assertEquals(0x39000001, w[w.length - 5]);   // strb w1, [x0]
        assertEquals(0x52801DC1, w[w.length - 6]);   // movz w1, #0xee
    }

    @Test
    void writeLoopShape() {
        int[] w = Arm64GuestPrograms.writeGfnToEveryPage(0x1000, 0x8000, 8, 0x47).words();
        // 4 + 4 (x0, x1) + 2 (x2) + 6 loop + 4 end
        assertEquals(20, w.length);
        assertArrayEquals(new int[] {0xD34CFC03, 0xAA030043, 0xF9000003, 0x91400400, 0xF1000421, 0x54FFFF61},
                java.util.Arrays.copyOfRange(w, 10, 16));
        assertEquals(0xD2C008E2, w[8]);              // movz x2, #0x47, lsl #32
        assertEquals(40 * 2, Arm64GuestPrograms.writeGfnToEveryPage(0x1000, 0x8000, 8, 0x47).code().length);
    }
}
