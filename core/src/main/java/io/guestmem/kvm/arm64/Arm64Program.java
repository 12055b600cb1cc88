package io.guestmem.kvm.arm64;

import io.guestmem.kvm.GuestProgram;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/** A hand-encoded A64 guest: its instruction words, loaded little-endian at {@code loadGpa} and entered there. */
public record Arm64Program(String name, long loadGpa, int[] words) implements GuestProgram {
    public Arm64Program {
        if (loadGpa % 4 != 0) throw new IllegalArgumentException("A64 code is 4-byte aligned");
        words = words.clone();
    }

    @Override
    public int[] words() {
        return words.clone();
    }

    /** The code as bytes, little-endian (arm64 instruction fetch is always little-endian). */
    public byte[] code() {
        ByteBuffer b = ByteBuffer.allocate(words.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (int w : words) b.putInt(w);
        return b.array();
    }

    @Override
    public List<Chunk> image() {
        return List.of(new Chunk(loadGpa, code()));
    }
}
