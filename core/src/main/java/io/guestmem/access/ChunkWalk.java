package io.guestmem.access;

import java.lang.foreign.MemorySegment;

/**
 * The one walk of a gpa range that every bulk operation of {@link GuestMemory} uses (rust-vmm
 * {@code vm-memory}'s {@code try_access}): slot by slot, page by page in GUEST_MEMFD slots (the access policy
 * answers per page), it checks each chunk before it is touched and hands it to a {@link Chunk} operation.
 * The walk stops at the first refusal with the typed exception naming that gpa and the bytes done, or when
 * the operation does fewer bytes than it was given (a channel with nothing more now).
 *
 * <p>Writes mark the VMM's dirty log here, for the bytes the operation says it did, so no bulk write can
 * forget to. The typed accessors do not walk: their fast paths are one bucket, and their slow paths
 * ({@code GuestMemory.readSlow}/{@code writeSlow}) go byte by byte without a lambda, to stay allocation-free.
 */
final class ChunkWalk {
    private ChunkWalk() {}

    /** What the walk checks and does besides calling the operation. */
    enum Mode {
        /** Host memory that may be read: RAM, backed, a shared page of a GUEST_MEMFD slot. */
        READ,
        /** As READ, and writable; the walk marks what the operation did as dirty. */
        WRITE,
        /** Only RAM (no host memory needed, no policy asked), chunks to the slot's end; marks dirty. */
        MARK
    }

    /**
     * One chunk's work. The operation gets its state as {@code ctx} rather than capturing it, so that the
     * callers' operations are constants and a walk allocates nothing of its own.
     */
    @FunctionalInterface
    interface Chunk<C, X extends Exception> {
        /**
         * Accesses {@code length} bytes at {@code offset} of slot {@code slot}'s view {@code view} (null in
         * {@link Mode#MARK} for an unbacked slot), {@code done} bytes into the request; returns the bytes done,
         * fewer than {@code length} to stop the walk.
         */
        long access(C ctx, int slot, MemorySegment view, long offset, long length, long done) throws X;
    }

    /** Does nothing to each chunk but accept it whole: for {@link Mode#MARK}, where the walk's marks are the work. */
    static final Chunk<Object, RuntimeException> WHOLE = (ctx, slot, view, offset, length, done) -> length;

    /** Copies from the segment {@code ctx} into guest memory (the segment's offset is the bytes done). */
    static final Chunk<MemorySegment, RuntimeException> COPY_IN = (src, slot, view, offset, length, done) -> {
        MemorySegment.copy(src, done, view, offset, length);
        return length;
    };

    /** Copies guest memory into the segment {@code ctx}. */
    static final Chunk<MemorySegment, RuntimeException> COPY_OUT = (dst, slot, view, offset, length, done) -> {
        MemorySegment.copy(view, offset, dst, done, length);
        return length;
    };

    /** Sets guest memory to the byte {@code ctx}. */
    static final Chunk<Byte, RuntimeException> FILL = (value, slot, view, offset, length, done) -> {
        view.asSlice(offset, length).fill(value);
        return length;
    };

    /**
     * Walks {@code [gpa, gpa + len)} of {@code table} calling {@code op} with {@code ctx} per chunk; returns the
     * bytes done ({@code len} unless the operation stopped early). {@code len <= 0} does nothing.
     */
    static <C, X extends Exception> long walk(SlotTable table, PageAccessPolicy policy, long gpa, long len, Mode mode,
                                              String opName, C ctx, Chunk<? super C, X> op) throws X {
        return run(table, policy, gpa, len, mode, opName, ctx, op);
    }

    /**
     * Checks {@code [gpa, gpa + len)} the way {@link #walk} would, touching nothing: a refusal names its gpa
     * with 0 bytes done (nothing was transferred). For operations that must not start unless they can finish
     * (channel reads: bytes taken from a socket cannot be put back), and for slices. Allocation-free.
     */
    static void check(SlotTable table, PageAccessPolicy policy, long gpa, long len, Mode mode, String opName) {
        run(table, policy, gpa, len, mode, opName, null, null);
    }

    private static <C, X extends Exception> long run(SlotTable t, PageAccessPolicy policy, long gpa, long len, Mode mode,
                                                     String opName, C ctx, Chunk<? super C, X> op) throws X {
        if (len <= 0) t.checkOpen(opName); // a closed memory refuses even an empty request; others fail in ramIndex
        long done = 0;
        while (done < len) {
            long g = gpa + done;
            long reported = op == null ? 0 : done;
            int i = mode == Mode.MARK ? t.ramIndex(g, reported, opName)
                    : t.checkedIndex(policy, g, reported, mode == Mode.WRITE, opName);
            long o = g - t.base(i);
            long n = Math.min(len - done, (mode == Mode.MARK ? t.size(i) : t.chunkEnd(i, o)) - o);
            long did = n;
            if (op != null) {
                did = op.access(ctx, i, t.any(i), o, n, done);
                if (mode != Mode.READ && did > 0) t.markWritten(i, o, did);
            }
            done += did;
            if (did < n) break;
        }
        return done;
    }
}
