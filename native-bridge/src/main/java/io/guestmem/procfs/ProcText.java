package io.guestmem.procfs;

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;

/** Opening the text files of {@code /proc/<pid>/} with typed errors for a missing process. */
final class ProcText {
    private ProcText() {}

    static String dir(int pid) {
        return pid == 0 ? "/proc/self" : "/proc/" + pid;
    }

    /** A line reader over {@code /proc/<pid>/<file>} (pid 0 = self); the caller closes it. */
    static BufferedReader open(int pid, String file) {
        String path = dir(pid) + "/" + file;
        try {
            return new BufferedReader(new InputStreamReader(new FileInputStream(path), StandardCharsets.ISO_8859_1),
                    1 << 16);
        } catch (IOException e) {
            throw translate(pid, file, path, e);
        }
    }

    static ProcfsException translate(int pid, String file, String path, IOException e) {
        if (pid > 0 && !Files.exists(Path.of("/proc/" + pid))) return new NoSuchProcessException(pid, file, e);
        if (e instanceof AccessDeniedException || String.valueOf(e.getMessage()).contains("Permission denied"))
            return new ProcfsException(path + ": permission denied (reading another process's " + file
                    + " needs ptrace-read rights on it)", e);
        if (e instanceof NoSuchFileException) return new ProcfsException(path + " does not exist", e);
        return new ProcfsException("cannot read " + path + ": " + e.getMessage(), e);
    }

    static void checkPid(int pid) {
        if (pid < 0) throw new IllegalArgumentException("pid must be positive (or 0 for self), got " + pid);
    }
}
