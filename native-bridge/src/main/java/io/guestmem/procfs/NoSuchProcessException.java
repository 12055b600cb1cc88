package io.guestmem.procfs;

/** The process whose {@code /proc/<pid>} file was asked for does not exist (or exited while being read). */
public class NoSuchProcessException extends ProcfsException {
    private final int pid;

    public NoSuchProcessException(int pid, String what, Throwable cause) {
        super("no process " + pid + ": /proc/" + pid + "/" + what + " cannot be read", cause);
        this.pid = pid;
    }

    public int pid() {
        return pid;
    }
}
