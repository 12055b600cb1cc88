package io.guestmem.cli;

import java.io.PrintWriter;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code guestmem} command. Subcommands: {@code demo} (the main job), {@code inspect}
 * (page-types for guest memory) and {@code vhost-user-blk} (a vhost-user back-end serving a raw image).
 * Bad arguments print one line and exit 2; a failed check exits 1.
 */
@Command(name = "guestmem", mixinStandardHelpOptions = true, version = "guestmem 0.1.0",
        description = "Guest-memory backend over real host memory, and KVM's memory logic in Java.",
        subcommands = {DemoCommand.class, InspectCommand.class, MigrateDestinationCommand.class,
                VhostUserBlkCommand.class,
                CommandLine.HelpCommand.class})
public final class Main implements Runnable {

    /** Exit code for bad arguments, as picocli and POSIX utilities use it. */
    public static final int EXIT_USAGE = 2;

    @Override
    public void run() {
        new CommandLine(this).usage(System.out);
    }

    public static void main(String[] args) {
        System.exit(execute(args));
    }

    /** Runs the command line on System.out/System.err and returns its exit code. */
    public static int execute(String... args) {
        return execute(null, null, args);
    }

    /**
     * Runs the command line writing to {@code out} and {@code err} (null: System.out / System.err) and returns
     * its exit code. Tests call this to capture what a user would see.
     */
    public static int execute(PrintWriter out, PrintWriter err, String... args) {
        CommandLine cl = new CommandLine(new Main());
        if (out != null) cl.setOut(out);
        if (err != null) cl.setErr(err);
        cl.setParameterExceptionHandler((ex, a) -> {
            // One clear line, not a usage dump: the user asked for --help if they want it.
            ex.getCommandLine().getErr().println("guestmem: " + ex.getMessage()
                    + " (see '" + ex.getCommandLine().getCommandSpec().qualifiedName() + " --help')");
            return EXIT_USAGE;
        });
        cl.setExecutionExceptionHandler((ex, c, parseResult) -> {
            if (ex instanceof UsageException u) {
                c.getErr().println("guestmem: " + u.getMessage());
                return EXIT_USAGE;
            }
            c.getErr().println("guestmem: " + ex.getMessage());
            if (System.getenv("GUESTMEM_DEBUG") != null) ex.printStackTrace(c.getErr());
            return 1;
        });
        try {
            return cl.execute(args);
        } finally {
            cl.getOut().flush();
            cl.getErr().flush();
        }
    }
}
