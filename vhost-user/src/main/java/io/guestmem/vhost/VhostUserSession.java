package io.guestmem.vhost;

import io.guestmem.access.GuestMemoryException;
import io.guestmem.sys.Errno;
import io.guestmem.sys.ErrnoException;
import io.guestmem.sys.Eventfd;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Poll;
import io.guestmem.sys.Posix;
import io.guestmem.sys.UnixSocket;
import io.guestmem.vhost.queue.DescriptorChain;
import io.guestmem.vhost.queue.RingLayout;
import io.guestmem.vhost.queue.SplitQueue;
import io.guestmem.vhost.queue.VirtqueueException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * One front-end connection, served in one thread: the messages on the socket and the kicks of the running
 * rings are waited for in one {@code poll}, so a message that changes a ring or the memory never races the
 * ring's requests (no lock anywhere), and a ring is stopped and its base read back between two requests.
 *
 * <p>{@link #serve()} returns when the front-end closes the connection, when {@link #stop()} is called from
 * another thread, or when a message is refused: then the reason is logged (WARNING) and returned, and the
 * connection closed. Whatever the session holds (the mapped regions and their fds, the eventfds, the
 * back-end request socket, the log) is closed when serve returns.
 */
public final class VhostUserSession implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(VhostUserSession.class.getName());
    static final long PROTOCOL_OFFERED = Features.P_MQ | Features.P_REPLY_ACK | Features.P_BACKEND_REQ | Features.P_CONFIG
            | Features.P_CONFIGURE_MEM_SLOTS | Features.P_LOG_SHMFD;

    private final MessageChannel channel;
    private final VhostUserDevice device;
    private final FrontendMemory memory = new FrontendMemory();
    private final Vring[] rings;
    private final Eventfd stop = Eventfd.create("vhost-user session stop");
    private final DirtyLog log;
    private long features, protocol, protocolOffered = PROTOCOL_OFFERED;
    private final java.util.concurrent.atomic.AtomicLongArray messages = new java.util.concurrent.atomic.AtomicLongArray(Request.values().length);
    private int backendReqFd = -1;
    private long requests;
    private boolean closed;

    public VhostUserSession(UnixSocket connection, VhostUserDevice device) {
        this.channel = new MessageChannel(connection);
        this.device = device;
        this.rings = new Vring[device.queues()];
        for (int i = 0; i < rings.length; i++) rings[i] = new Vring(i);
        this.log = new DirtyLog(memory.guestMemory());
    }

    /** The features the back-end offers: the device's and the protocol's own. */
    public long offeredFeatures() {
        return device.features() | Features.PROTOCOL_FEATURES | Features.LOG_ALL;
    }

    /**
     * Offers only the protocol features of {@code mask} (before the front-end asks): without
     * {@link Features#P_CONFIGURE_MEM_SLOTS}, for instance, QEMU sends its whole memory table with
     * SET_MEM_TABLE, at the start and at every change, instead of one ADD_MEM_REG/REM_MEM_REG per region.
     */
    public VhostUserSession offerProtocolOnly(long mask) {
        protocolOffered = PROTOCOL_OFFERED & mask;
        return this;
    }

    /** How many messages of kind {@code r} the front-end has sent (any thread may ask). */
    public long messages(Request r) {
        return messages.get(r.ordinal());
    }

    /** Requests served so far (all queues). */
    public long requests() {
        return requests;
    }

    public FrontendMemory memory() {
        return memory;
    }

    public DirtyLog log() {
        return log;
    }

    /** Serves until the end of the connection; returns why it ended. Closes everything it holds. */
    public String serve() {
        int[] fds = new int[2 + rings.length];
        int[] ringOf = new int[fds.length];
        short[] rev = new short[fds.length];
        try {
            while (true) {
                int n = 0;
                fds[n++] = channel.fd();
                fds[n++] = stop.fd();
                for (Vring r : rings)
                    if (r.running()) {
                        ringOf[n] = r.index;
                        fds[n++] = r.kick.fd();
                    }
                Poll.readable(fds, n, rev, -1);
                if (rev[1] != 0) return ended("stopped");
                for (int i = 2; i < n; i++)
                    if (rev[i] != 0) {
                        Vring r = rings[ringOf[i]];
                        if ((rev[i] & Poll.POLLIN) == 0)
                            throw new VhostUserException(Errno.EBADF, "SET_VRING_KICK", "the kick fd of ring " + r.index
                                    + " reports poll events 0x" + Integer.toHexString(rev[i]) + " and no data");
                        r.kick.drain();
                        serveRing(r);
                    }
                if (rev[0] != 0) {
                    Message m = channel.read();
                    if (m == null) return ended("the front-end closed the connection");
                    handle(m);
                }
            }
        } catch (ErrnoException | GuestMemoryException | IllegalArgumentException | IllegalStateException
                 | InternalError e) { // InternalError: HotSpot's SIGBUS, a region's file shrunk under its mapping
            String why = "closing the connection: " + e.getMessage();
            LOG.log(System.Logger.Level.WARNING, "vhost-user: " + why);
            return why;
        } finally {
            close();
        }
    }

    /** Makes {@link #serve()} return (from any thread). */
    public void stop() {
        try {
            stop.signal();
        } catch (IllegalStateException closed) {
            // serve() has returned already
        }
    }

    private String ended(String why) {
        LOG.log(System.Logger.Level.INFO, "vhost-user: " + why + " after " + requests + " requests");
        return why;
    }

    // ------------------------------------------------------------------------------------------ messages

    private void handle(Message m) {
        Request r = m.request();
        messages.incrementAndGet(r.ordinal());
        boolean replied = false;
        switch (r) {
            case GET_FEATURES -> replied = reply(r, offeredFeatures());
            case SET_FEATURES -> setFeatures(m.u64(0));
            case GET_PROTOCOL_FEATURES -> replied = reply(r, protocolOffered);
            case SET_PROTOCOL_FEATURES -> {
                long p = m.u64(0);
                if ((p & ~protocolOffered) != 0) throw refused(r, "protocol features " + Fmt.hex(p & ~protocolOffered) + " were not offered");
                protocol = p;
            }
            case SET_OWNER -> { }
            case RESET_OWNER -> {
                for (Vring v : rings) v.close();
                features = 0;
            }
            case GET_QUEUE_NUM -> replied = reply(r, rings.length);
            case GET_MAX_MEM_SLOTS -> replied = reply(r, FrontendMemory.MAX_SLOTS);
            case SET_MEM_TABLE -> setMemTable(m);
            case ADD_MEM_REG -> {
                MemoryRegion reg;
                try {
                    reg = MemoryRegion.read(m.body(), 8, r.name());
                } catch (RuntimeException e) {
                    m.closeFds();
                    throw e;
                }
                memory.add(reg, m.fds()[0], r.name());
            }
            case REM_MEM_REG -> {
                m.closeFds();
                memory.remove(MemoryRegion.read(m.body(), 8, r.name()), r.name());
            }
            case SET_VRING_NUM -> {
                Vring v = stopped(m);
                int num = m.u32(4);
                if (num < 1 || num > RingLayout.MAX_SIZE || Integer.bitCount(num) != 1)
                    throw refused(r, "ring " + v.index + " of " + Integer.toUnsignedString(num) + " entries (a power of two up to " + RingLayout.MAX_SIZE + ")");
                v.num = num;
            }
            case SET_VRING_ADDR -> setVringAddr(m);
            case SET_VRING_BASE -> stopped(m).base = m.u32(4) & 0xffff;
            case GET_VRING_BASE -> replied = getVringBase(m);
            case SET_VRING_KICK -> setVringKick(m);
            case SET_VRING_CALL -> {
                Vring v = ringOf(m, m.u64(0) & Vring.INDEX_MASK);
                v.call = Vring.replace(v.call, eventfdOf(m, "call of ring " + v.index));
            }
            case SET_VRING_ERR -> {
                Vring v = ringOf(m, m.u64(0) & Vring.INDEX_MASK);
                v.err = Vring.replace(v.err, eventfdOf(m, "err of ring " + v.index));
            }
            case SET_VRING_ENABLE -> {
                Vring v = ring(m);
                int on = m.u32(4);
                if (on != 0 && on != 1) throw refused(r, "enable " + on);
                v.enabled = on == 1;
                if (v.running()) serveRing(v); // what the driver made available while it was disabled
            }
            case SET_BACKEND_REQ_FD -> {
                // kept for the connection's life: this device sends no back-end requests (no config change, no IOTLB)
                if (backendReqFd >= 0) Posix.close(backendReqFd);
                backendReqFd = m.fds()[0];
            }
            case GET_CONFIG -> replied = getConfig(m);
            case SET_CONFIG -> {
                // this device offers no writable configuration field (no CONFIG_WCE): nothing to change
            }
            case SET_LOG_BASE -> replied = setLogBase(m);
        }
        if (!replied && m.needsReply() && (protocol & Features.P_REPLY_ACK) != 0) reply(r, 0);
    }

    private void setFeatures(long f) {
        if ((f & ~offeredFeatures()) != 0) throw refused(Request.SET_FEATURES, "features " + Fmt.hex(f & ~offeredFeatures()) + " were not offered");
        boolean logNow = (f & Features.LOG_ALL) != 0, logBefore = (features & Features.LOG_ALL) != 0;
        features = f;
        if (logNow != logBefore) log.setLogging(logNow);
        // a ring that runs keeps the ring features it started with; its next start takes these
    }

    private void setMemTable(Message m) {
        ByteBuffer b = m.body();
        int n = b.getInt(0), i = 0;
        int[] fds = m.fds();
        MemoryRegion[] rs = new MemoryRegion[n];
        try {
            for (; i < n; i++) rs[i] = MemoryRegion.read(b, 8 + i * MemoryRegion.BYTES, Request.SET_MEM_TABLE.name());
        } catch (RuntimeException e) {
            m.closeFds();
            throw e;
        }
        memory.clear();
        for (i = 0; i < n; i++) {
            try {
                memory.add(rs[i], fds[i], Request.SET_MEM_TABLE.name());
            } catch (RuntimeException e) {
                Message.closeAll(java.util.Arrays.copyOfRange(fds, i + 1, n)); // the ones add() did not take
                throw e;
            }
        }
    }

    private void setVringAddr(Message m) {
        Vring v = ring(m);
        ByteBuffer b = m.body();
        v.addresses = new Vring.Addresses(b.getInt(4), b.getLong(8), b.getLong(16), b.getLong(24), b.getLong(32));
        if (v.queue != null) { // a change while it runs (the log flag at a migration's start): same place in the ring
            v.base = v.queue.lastAvailIdx();
            start(v);
        }
    }

    private boolean getVringBase(Message m) {
        Vring v = ring(m);
        v.stop();
        v.kick = Vring.replace(v.kick, null); // the spec: stopped until a new kick fd starts it again
        log.sync(); // what it wrote before the stop is in the log before the front-end reads the base
        ByteBuffer b = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putInt(v.index).putInt(v.base);
        channel.reply(Request.GET_VRING_BASE, b.array());
        return true;
    }

    private void setVringKick(Message m) {
        Vring v = ringOf(m, m.u64(0) & Vring.INDEX_MASK);
        Eventfd k = eventfdOf(m, "kick of ring " + v.index);
        if (k == null) throw refused(Request.SET_VRING_KICK, "ring " + v.index + " without a kick fd (polling mode is not offered)");
        v.kick = Vring.replace(v.kick, k);
        if ((features & Features.PROTOCOL_FEATURES) == 0) v.enabled = true; // without them a ring starts enabled
        start(v);
        if (v.running()) serveRing(v); // the driver may have kicked before the fd was ours
    }

    private void start(Vring v) {
        Vring.Addresses a = v.addresses;
        if (a == null || v.num == 0) throw refused(Request.SET_VRING_KICK, "ring " + v.index + " has no size or addresses");
        RingLayout l = new RingLayout(v.num, memory.gpaOf(a.desc(), 16L * v.num, "desc of ring " + v.index),
                memory.gpaOf(a.avail(), 6 + 2L * v.num, "avail of ring " + v.index),
                memory.gpaOf(a.used(), 6 + 8L * v.num, "used of ring " + v.index));
        try {
            v.queue = new SplitQueue(memory.guestMemory(), l, (features & Features.RING_EVENT_IDX) != 0,
                    (features & Features.RING_INDIRECT_DESC) != 0, v.base);
        } catch (VirtqueueException e) {
            throw refused(Request.SET_VRING_KICK, e.getMessage());
        }
    }

    private boolean getConfig(Message m) {
        ByteBuffer b = m.body();
        int offset = b.getInt(0), size = b.getInt(4);
        if (offset < 0 || size < 0 || offset > Request.MAX_CONFIG || size > Request.MAX_CONFIG - offset
                || m.payload().length != 12 + size)
            throw refused(Request.GET_CONFIG, "offset " + offset + " size " + size + " in " + m.payload().length + " bytes");
        ByteBuffer out = ByteBuffer.allocate(12 + size).order(ByteOrder.LITTLE_ENDIAN);
        out.putInt(offset).putInt(size).putInt(b.getInt(8)).put(device.config(offset, size));
        channel.reply(Request.GET_CONFIG, out.array());
        return true;
    }

    private boolean setLogBase(Message m) {
        long size = m.u64(0), offset = m.u64(8);
        log.setBase(m.fds()[0], size, offset);
        reply(Request.SET_LOG_BASE, 0); // QEMU waits for this one with LOG_SHMFD, REPLY_ACK or not
        return true;
    }

    // ------------------------------------------------------------------------------------------ rings

    /** Serves what the driver made available until it has no more, then interrupts it if it asked to be. */
    private void serveRing(Vring v) {
        SplitQueue q = v.queue;
        try {
            do {
                DescriptorChain c;
                while ((c = q.pop()) != null) {
                    int written = device.process(v.index, memory.guestMemory(), c);
                    q.push(c.head(), written);
                    requests++;
                }
            } while (q.rearm());
            log.sync();
            if (q.needsInterrupt() && v.call != null) v.call.signal();
        } catch (VirtqueueException | GuestMemoryException e) {
            // the ring is broken, not the connection: stop it and tell the front-end (the err fd)
            LOG.log(System.Logger.Level.WARNING, "vhost-user: ring " + v.index + " stopped: " + e.getMessage());
            v.stop();
            log.sync();
            if (v.err != null) v.err.signal();
        }
    }

    private Vring ring(Message m) {
        return ringOf(m, Integer.toUnsignedLong(m.u32(0)));
    }

    private Vring ringOf(Message m, long index) {
        if (index >= rings.length) {
            m.closeFds();
            throw refused(m.request(), "ring " + index + " (the device has " + rings.length + ")");
        }
        return rings[(int) index];
    }

    private Vring stopped(Message m) {
        Vring v = ring(m);
        if (v.queue != null) throw refused(m.request(), "ring " + v.index + " is running");
        return v;
    }

    private static Eventfd eventfdOf(Message m, String what) {
        int[] fds = m.fds();
        return fds.length == 0 ? null : Eventfd.adopt(fds[0], what);
    }

    private boolean reply(Request r, long value) {
        channel.replyU64(r, value);
        return true;
    }

    private static VhostUserException refused(Request r, String why) {
        return new VhostUserException(Errno.EINVAL, r.name(), why);
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        for (Vring v : rings) v.close();
        if (backendReqFd >= 0) {
            Posix.close(backendReqFd);
            backendReqFd = -1;
        }
        log.close();
        memory.close();
        channel.close();
        stop.close();
    }
}
