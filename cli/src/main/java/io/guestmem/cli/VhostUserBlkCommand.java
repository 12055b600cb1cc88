package io.guestmem.cli;

import io.guestmem.vhost.VhostUserServer;
import io.guestmem.vhost.blk.RawImage;
import io.guestmem.vhost.blk.VirtioBlk;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/**
 * {@code guestmem vhost-user-blk --socket PATH --image FILE}: a vhost-user-blk back-end serving a raw image to
 * a front-end such as QEMU ({@code -chardev socket,id=c0,path=PATH -device vhost-user-blk-pci,chardev=c0}),
 * in place of {@code qemu-storage-daemon --export type=vhost-user-blk,...}. Front-ends are served one after
 * another until the process is interrupted (SIGINT/SIGTERM), or until the first one goes with {@code --once}.
 */
@Command(name = "vhost-user-blk", mixinStandardHelpOptions = true,
        description = {"Serve a raw image file as a vhost-user-blk device on a unix socket (QEMU connects to it).",
                "Runs until interrupted; prints one line per front-end session."})
final class VhostUserBlkCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--socket", required = true, paramLabel = "PATH", description = "The unix socket to listen on (replaced if it exists).")
    Path socket;

    @Option(names = "--image", required = true, paramLabel = "FILE", description = "The raw image (an existing file; its size is the disk's).")
    Path image;

    @Option(names = "--serial", defaultValue = "guestmem", paramLabel = "ID", description = "What GET_ID answers (at most 20 bytes). Default: ${DEFAULT-VALUE}.")
    String serial;

    // seg_max in the config space is read before any ring exists: it must fit the front-end's rings, or the
    // guest driver builds (indirect) chains longer than the queue, which the spec forbids and the queue refuses
    @Option(names = "--queue-size", defaultValue = "128", paramLabel = "N",
            description = "The front-end's queue size (QEMU's vhost-user-blk-pci queue-size, 128 unless set); the device"
                    + " tells the driver to use at most N - 2 segments per request. Default: ${DEFAULT-VALUE}.")
    int queueSize;

    @Option(names = "--once", description = "Exit when the first front-end disconnects.")
    boolean once;

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        if (!Files.isRegularFile(image)) throw new UsageException("--image " + image + ": not an existing file");
        if (queueSize < 4 || Integer.bitCount(queueSize) != 1) throw new UsageException("--queue-size " + queueSize + ": a power of two, at least 4");
        // one image for the process: the sessions take turns (one front-end at a time)
        try (RawImage raw = RawImage.open(image.toString());
             VhostUserServer server = VhostUserServer.listen(socket, () -> new VirtioBlk(raw, serial, queueSize),
                s -> {
                    out.println("vhost-user-blk: front-end connected on " + socket);
                    out.flush();
                })) {
            if (raw.size() < VirtioBlk.SECTOR) throw new UsageException("--image " + image + ": smaller than one sector");
            out.println("vhost-user-blk: serving " + image + " on " + socket + (once ? " (one front-end)" : " (until interrupted)"));
            out.flush();
            Thread hook = new Thread(server::close, "vhost-user-blk shutdown");
            Runtime.getRuntime().addShutdownHook(hook);
            Thread t = new Thread(server::serve, "vhost-user-blk");
            t.start();
            int seen = 0;
            while (t.isAlive()) {
                t.join(200);
                var ends = server.endings();
                for (; seen < ends.size(); seen++) {
                    out.println("vhost-user-blk: session ended: " + ends.get(seen));
                    out.flush();
                }
                if (once && seen > 0) break;
            }
            try {
                Runtime.getRuntime().removeShutdownHook(hook);
            } catch (IllegalStateException shuttingDown) {
                // the hook runs already
            }
        }
        return 0;
    }
}
