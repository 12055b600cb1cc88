package io.guestmem.sys;

import io.guestmem.ffm.Native;
import static io.guestmem.ffm.Native.C_INT;
import static io.guestmem.ffm.Native.C_POINTER;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;

/**
 * A regular file with no name yet ({@code open(dir, O_TMPFILE)}), given one by {@link #linkTo} once it is
 * complete. Until then nothing in the directory shows it, and if the process dies first, however it dies, the
 * kernel frees it with its last descriptor: a writer that publishes through this can never leave half a
 * file, nor a temporary name, behind (the "no later command needed" half of crash safety). Filesystems
 * without {@code O_TMPFILE} refuse with {@code EOPNOTSUPP} ({@code EISDIR} on kernels before 3.11).
 */
public final class UnlinkedFile implements AutoCloseable {
    private static final int AT_FDCWD = -100, AT_SYMLINK_FOLLOW = 0x400;
    private static final MethodHandle LINKAT = Native.errnoCall("linkat",
            FunctionDescriptor.of(C_INT, C_INT, C_POINTER, C_INT, C_POINTER, C_INT));

    private final FileFd file;
    private final Path dir;

    private UnlinkedFile(FileFd file, Path dir) {
        this.file = file;
        this.dir = dir;
    }

    /** A new unnamed file in {@code dir}, read-write, mode 0600. */
    public static UnlinkedFile create(Path dir) {
        Path d = dir.toAbsolutePath();
        return new UnlinkedFile(FileFd.open(d.toString(), Arch.CURRENT.oTmpfile() | Posix.O_RDWR, 0600), d);
    }

    /**
     * The file's {@code /proc/self/fd} link: opening it opens this file (how Java code gets a FileChannel on
     * it without a name in the directory).
     */
    public Path procPath() {
        return Path.of("/proc/self/fd/" + fd());
    }

    /**
     * Gives the file the name {@code target} in its directory ({@code linkat} of the fd link with
     * {@code AT_SYMLINK_FOLLOW}, which needs no capability, unlike {@code AT_EMPTY_PATH}). A name that exists
     * is refused with {@code EEXIST}: link fails rather than replaces.
     */
    public void linkTo(Path target) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = Native.state();
            String from = procPath().toString(), to = target.toAbsolutePath().toString();
            int r = (int) LINKAT.invokeExact(st, AT_FDCWD, a.allocateFrom(from), AT_FDCWD, a.allocateFrom(to),
                    AT_SYMLINK_FOLLOW);
            if (r < 0) throw new SyscallException(Native.errno(st), "linkat(" + from + ", " + to + ", AT_SYMLINK_FOLLOW)");
        } catch (Throwable t) {
            throw Native.rethrow(t);
        }
    }

    /** The descriptor; after {@link #close} IllegalStateException. */
    public int fd() {
        return file.fd();
    }

    /** Closes the descriptor: a file never linked is gone with it. Idempotent. */
    @Override
    public void close() {
        file.close();
    }

    @Override
    public String toString() {
        return "unnamed file " + file + " in " + dir;
    }
}
