package io.guestmem.kvm;

import java.util.List;

/**
 * A tiny guest from a {@link GuestCpu}: the bytes to load into guest memory ({@link #image()}, each chunk at its
 * gpa) before {@link GuestCpu#runToCompletion} runs it. The concrete type belongs to the architecture that
 * built it; only that architecture's {@link GuestCpu} can run it.
 */
public interface GuestProgram {
    String name();

    /** What to load, where: every chunk fits in one 4 KiB guest page at the program's code gpa. */
    List<Chunk> image();

    record Chunk(long gpa, byte[] bytes) {
        public Chunk {
            bytes = bytes.clone();
        }

        @Override
        public byte[] bytes() {
            return bytes.clone();
        }
    }
}
