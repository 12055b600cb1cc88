package io.guestmem.vhost;

import io.guestmem.sys.UnixSocket;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * A vhost-user back-end listening on a unix socket path, as {@code qemu-storage-daemon --export
 * vhost-user-blk} does: the front-ends that connect are served one after another (a vhost-user device has one
 * front-end at a time; the next one, a migrated guest's destination QEMU for instance, connects after the
 * first has gone), each by a {@link VhostUserSession} over a device the factory makes for it, in this
 * server's one thread.
 *
 * <p>The socket file is created by {@link #listen} (a stale one at the path is replaced) and removed by
 * {@link #close}, which also ends the session being served.
 */
public final class VhostUserServer implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(VhostUserServer.class.getName());
    private static final Duration POLL = Duration.ofMillis(200);

    private final Path path;
    private final UnixSocket listener;
    private final Supplier<? extends VhostUserDevice> devices;
    private final Consumer<VhostUserSession> onSession;
    private final List<String> endings = new ArrayList<>();
    private volatile VhostUserSession current;
    private volatile boolean closed;
    private Thread thread;

    private VhostUserServer(Path path, UnixSocket listener, Supplier<? extends VhostUserDevice> devices,
                            Consumer<VhostUserSession> onSession) {
        this.path = path;
        this.listener = listener;
        this.devices = devices;
        this.onSession = onSession;
    }

    /**
     * Listens on {@code path}; each connection gets a new device from {@code devices}, and {@code onSession}
     * sees each session before it serves its first message (to watch its log, for instance).
     */
    public static VhostUserServer listen(Path path, Supplier<? extends VhostUserDevice> devices, Consumer<VhostUserSession> onSession) {
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            throw new UncheckedIOException("removing the stale socket " + path, e);
        }
        return new VhostUserServer(path, UnixSocket.listen(path.toString()), devices, onSession);
    }

    public Path path() {
        return path;
    }

    /** Serves front-ends one after another until {@link #close}; in the calling thread. */
    public void serve() {
        while (!closed) {
            UnixSocket c;
            try {
                if (!listener.awaitReadable(POLL)) continue;
                c = listener.accept(POLL);
            } catch (RuntimeException e) {
                if (closed) return;
                throw e;
            }
            VhostUserSession s = new VhostUserSession(c, devices.get());
            current = s;
            onSession.accept(s);
            if (closed) s.stop(); // closed between accept and here: serve() returns at once
            String why = s.serve();
            synchronized (endings) {
                endings.add(why);
            }
            LOG.log(System.Logger.Level.INFO, "vhost-user: session on " + path + " ended: " + why + " (" + s.requests() + " requests)");
        }
    }

    /** {@link #serve} in a new daemon thread named after the socket. */
    public synchronized VhostUserServer start() {
        if (thread != null) throw new IllegalStateException("started already");
        thread = new Thread(this::serve, "vhost-user " + path.getFileName());
        thread.setDaemon(true);
        thread.start();
        return this;
    }

    /** The session being served, or the last one (null before the first connection). */
    public VhostUserSession session() {
        return current;
    }

    /** Why each finished session ended, in order. */
    public List<String> endings() {
        synchronized (endings) {
            return List.copyOf(endings);
        }
    }

    @Override
    public void close() {
        if (closed) return;
        closed = true;
        VhostUserSession s = current;
        if (s != null) s.stop();
        Thread t;
        synchronized (this) {
            t = thread;
        }
        if (t != null && t != Thread.currentThread()) {
            try {
                t.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        listener.close();
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "vhost-user: could not remove " + path + ": " + e.getMessage());
        }
    }
}
