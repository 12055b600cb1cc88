package io.guestmem.host;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The one process that writes this JVM's changes to system-wide hugetlb knobs, and takes them back when
 * this JVM dies however it dies. It is a POSIX shell started once per JVM (in its own session, so a
 * terminal's ^C or a kill of the JVM's process group does not reach it), reading requests
 * {@code <id> <sysfs file> <delta>} on its stdin. For each it takes {@code flock} on
 * {@code /sys/kernel/mm/hugepages} (every guestmem process's guardian locks the same inode, so two
 * processes' read-modify-writes never interleave, and no lock file is left anywhere), adds the delta
 * (not below 0), and replies with what the kernel really changed and the write's status. It keeps the
 * net change per file. The only writer of that ledger is the guardian itself, after the write, so it can
 * never be out of step with the kernel: there is no instant at which the JVM has changed a knob that the
 * guardian does not know about. When its stdin reaches EOF (the kernel closes the pipe's write end as the
 * JVM exits: clean exit, exception, SIGKILL, OOM kill), it subtracts each file's net change, under the
 * same lock, and exits. Deltas, never absolute values: another process's raise on the same pool stays.
 */
final class PoolGuardian {
    /** The guardian. POSIX sh plus util-linux flock: dash, bash and busybox run it. */
    static final String SCRIPT = """
            trap '' INT HUP TERM QUIT PIPE
            exec 9<"$1" || exit 1
            ids=
            apply() {
              flock -x 9
              cur=$(cat "$2")
              new=$((cur + $3))
              [ "$new" -lt 0 ] && new=0
              if err=$( { echo "$new" >"$2"; } 2>&1 ); then rc=0; else rc=1; fi
              now=$(cat "$2")
              flock -u 9
              got=$((now - cur))
              eval "n=\\${net_$1:-0}"
              [ -z "$(eval echo \\${path_$1})" ] && ids="$ids $1"
              eval "net_$1=$((n + got))"
              eval "path_$1=\\$2"
            }
            while read -r id file delta; do
              apply "$id" "$file" "$delta"
              echo "$got $rc $err" | tr -d '\\n'; echo
            done
            for id in $ids; do
              eval "n=\\$net_$id; f=\\$path_$id"
              [ "$n" -ne 0 ] && apply "$id" "$f" $((0 - n))
            done
            exit 0
            """;

    private static PoolGuardian instance;

    private final Process process;
    private final OutputStream in;
    private final BufferedReader out;
    private final Map<Path, Integer> ids = new HashMap<>();

    private PoolGuardian(Process p) {
        this.process = p;
        this.in = p.getOutputStream();
        this.out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.US_ASCII));
    }

    /** This JVM's guardian, started on first use. */
    static synchronized PoolGuardian get() {
        if (instance == null || !instance.process.isAlive()) instance = start();
        return instance;
    }

    private static PoolGuardian start() {
        String setsid = Files.isExecutable(Path.of("/usr/bin/setsid")) ? "/usr/bin/setsid"
                : Files.isExecutable(Path.of("/bin/setsid")) ? "/bin/setsid" : null;
        List<String> cmd = setsid == null
                ? List.of("/bin/sh", "-c", SCRIPT, "guestmem-pool-guardian", HugePagePools.ROOT.toString())
                : List.of(setsid, "/bin/sh", "-c", SCRIPT, "guestmem-pool-guardian", HugePagePools.ROOT.toString());
        try {
            Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD).start();
            return new PoolGuardian(p);
        } catch (IOException e) {
            throw new IllegalStateException("cannot start the hugetlb pool guardian " + cmd.getFirst()
                    + " (it puts raised pools back when this process dies): " + e, e);
        }
    }

    /** The guardian's pid, for tests and messages. */
    long pid() {
        return process.pid();
    }

    /**
     * {@code file += delta} (not below 0) through the guardian; returns how much the kernel's value really
     * changed. Throws when the write itself failed (no root, the kernel refused the value).
     */
    synchronized long change(Path file, long delta) {
        int id = ids.computeIfAbsent(file, f -> ids.size());
        String reply;
        try {
            in.write((id + " " + file + " " + delta + "\n").getBytes(StandardCharsets.US_ASCII));
            in.flush();
            reply = out.readLine();
        } catch (IOException e) {
            throw new IllegalStateException("hugetlb pool guardian (pid " + process.pid() + ") is gone: " + e, e);
        }
        if (reply == null)
            throw new IllegalStateException("hugetlb pool guardian (pid " + process.pid() + ") exited before changing " + file);
        String[] f = reply.trim().split(" ", 3);
        long got = Long.parseLong(f[0]);
        if (!f[1].equals("0") && got == 0) {
            String why = f.length > 2 ? f[2].replaceAll("^.*: ", "") : "unknown error";
            // the shell reports strerror(); name the errno as every other library error does
            why = switch (why) {
                case "Permission denied" -> "EACCES (Permission denied)";
                case "Operation not permitted" -> "EPERM (Operation not permitted)";
                case "Invalid argument" -> "EINVAL (Invalid argument)";
                case "Cannot allocate memory" -> "ENOMEM (Cannot allocate memory)";
                default -> why;
            };
            throw new IllegalStateException("cannot write " + file + ": " + why + " from write(" + file.getFileName()
                    + ", " + delta + " more) (root needed)");
        }
        return got;
    }
}
