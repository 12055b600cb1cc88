package io.guestmem.memslot;

import io.guestmem.KvmException;
import io.guestmem.procfs.AccessOk;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;

import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * The memslots of one VM and their single writer: {@code KVM_SET_USER_MEMORY_REGION2} reimplemented
 * ({@code kvm_set_memory_region}, {@code __kvm_set_memory_region}, {@code kvm_set_memslot}).
 *
 * <p>Writers serialize on this object; readers never lock: {@link #current(int)} returns the immutable
 * {@link MemslotSet} last published (a volatile read), and a reader keeps using the set it started with.
 * Every change bumps a generation counter shared by all address spaces, and the new set carries it.
 *
 * <h2>A change, step by step</h2>
 * <ol>
 * <li>Validation, in KVM's order and with KVM's errors (all {@link KvmException}):
 *   flags outside LOG_DIRTY_PAGES|READONLY|GUEST_MEMFD, GUEST_MEMFD with READONLY or LOG_DIRTY_PAGES, or
 *   GUEST_MEMFD/READONLY when the configuration disallows them: EINVAL; size, gpa, hva (and the guest_memfd
 *   offset) not page aligned: EINVAL; hva range wrapping or ending past the user address limit read from
 *   the machine: EINVAL (KVM's {@code access_ok}, see {@link AccessOk}); address space or id beyond the
 *   limits: EINVAL; gpa + size wrapping: EINVAL; more than {@link #MAX_NR_PAGES} pages: EINVAL.</li>
 * <li>Classification: size 0 deletes (deleting a slot that does not exist: EINVAL, as KVM since 5.7); a new
 *   id creates; for an existing id, a GUEST_MEMFD slot or request is immutable (EINVAL), a different hva,
 *   size, or READONLY/GUEST_MEMFD bit is EINVAL, a different base gfn is a MOVE, different flags
 *   (LOG_DIRTY_PAGES) are FLAGS_ONLY, and an identical request changes nothing (no new generation). CREATE
 *   and MOVE overlapping another slot of the address space: EEXIST. Then {@code kvm_gmem_bind} for a
 *   GUEST_MEMFD slot: a negative or closed fd is EBADF; with the VM's {@link GuestMemfdTable} in the
 *   configuration, an fd that is no guest_memfd of this VM, a range outside the file, and a range
 *   overlapping another binding of the same file are EINVAL (EEXIST where the VM's KVM says so; without a table: the writer's own bindings by
 *   fd number). Last the architecture's {@code kvm_arch_prepare_memory_region}: a created or moved slot
 *   ending past the configured guest-physical limit costs the configured errno.</li>
 * <li>Every {@link MemslotObserver} sees the change, in registration order; a throw vetoes it: the observers
 *   already called are rolled back in reverse order and the exception reaches the caller unchanged (so a
 *   slot lock's refusal arrives as its own exception).</li>
 * <li>Publication, through the {@link PublishGate} if one is installed (the MMU notifier: it waits for
 *   in-flight hva invalidations, as KVM waits for {@code mn_active_invalidate_count}, and invalidates what a
 *   DELETE, MOVE or dirty-logging FLAGS_ONLY took away); then {@code committed} for every observer.</li>
 * </ol>
 *
 * <p>Difference from KVM, on purpose: KVM marks a deleted/moved slot INVALID before asking the architecture
 * to prepare; here the invalidation comes after the observers accepted, so that a vetoed change (a locked
 * slot) leaves no trace, not even a spurious retry.
 */
public final class Memslots {

    /** {@code KVM_USER_MEM_SLOTS} on x86 (what {@code KVM_CAP_NR_MEMSLOTS} reports here). */
    public static final int DEFAULT_MAX_SLOTS = 32764;
    /** {@code KVM_MEM_MAX_NR_PAGES}: a slot's npages must fit in 31 bits. */
    public static final long MAX_NR_PAGES = (1L << 31) - 1;

    private static final int KNOWN_FLAGS = Memslot.LOG_DIRTY_PAGES | Memslot.READONLY | Memslot.GUEST_MEMFD;

    /**
     * Limits and capabilities of the VM being modelled.
     *
     * @param maxSlots         ids must be below this ({@code KVM_CAP_NR_MEMSLOTS})
     * @param addressSpaces    {@code KVM_CAP_MULTI_ADDRESS_SPACE} (2 on x86 with SMM, 1 elsewhere)
     * @param readonlyMem      {@code kvm_arch_has_readonly_mem}
     * @param privateMem       {@code kvm_arch_has_private_mem}: GUEST_MEMFD slots allowed
     * @param userAddressLimit the end {@code access_ok} lets an hva range reach ({@link AccessOk#limit()}: read
     *                         from the machine); {@code [hva, hva + size)} must end at or below it
     * @param gpaLimit         the end (unsigned) a created or moved slot's guest-physical range may reach, as the
     *                         architecture's {@code kvm_arch_prepare_memory_region} checks it; -1 for none
     * @param gpaLimitErrno    what passing {@code gpaLimit} costs (EINVAL on x86, EFAULT on arm64)
     * @param guestMemfds      this VM's guest_memfds, for {@code kvm_gmem_bind}'s checks; null when the writer
     *                         models no particular VM (then a GUEST_MEMFD slot's fd is trusted, and only the
     *                         bindings the writer made itself are checked for overlap)
     */
    public record Config(PageGeometry geometry, int maxSlots, int addressSpaces, boolean readonlyMem,
                         boolean privateMem, long userAddressLimit, long gpaLimit, Errno gpaLimitErrno,
                         GuestMemfdTable guestMemfds) {
        public Config {
            if (geometry == null) throw new IllegalArgumentException("geometry");
            if (maxSlots < 1 || maxSlots > 65535) throw new IllegalArgumentException("maxSlots " + maxSlots);
            if (addressSpaces < 1 || addressSpaces > 65535) {
                throw new IllegalArgumentException("addressSpaces " + addressSpaces);
            }
            if (userAddressLimit <= 0) throw new IllegalArgumentException("userAddressLimit " + Fmt.hex(userAddressLimit));
            if (gpaLimitErrno == null) throw new IllegalArgumentException("gpaLimitErrno");
        }

        /** The machine's access_ok limit, no guest-physical bound, no guest_memfd table. */
        public Config(PageGeometry geometry, int maxSlots, int addressSpaces, boolean readonlyMem, boolean privateMem) {
            this(geometry, maxSlots, addressSpaces, readonlyMem, privateMem, AccessOk.limit(), -1, Errno.EINVAL, null);
        }

        /** Host page size, {@link #DEFAULT_MAX_SLOTS}, 2 address spaces, READONLY and GUEST_MEMFD allowed. */
        public static Config defaults() {
            return of(PageGeometry.host());
        }

        /** The defaults with another page geometry. */
        public static Config of(PageGeometry geometry) {
            return new Config(geometry, DEFAULT_MAX_SLOTS, 2, true, true);
        }

        public Config withMaxSlots(int n) {
            return new Config(geometry, n, addressSpaces, readonlyMem, privateMem, userAddressLimit, gpaLimit,
                    gpaLimitErrno, guestMemfds);
        }

        public Config withAddressSpaces(int n) {
            return new Config(geometry, maxSlots, n, readonlyMem, privateMem, userAddressLimit, gpaLimit,
                    gpaLimitErrno, guestMemfds);
        }

        public Config withReadonlyMem(boolean on) {
            return new Config(geometry, maxSlots, addressSpaces, on, privateMem, userAddressLimit, gpaLimit,
                    gpaLimitErrno, guestMemfds);
        }

        public Config withPrivateMem(boolean on) {
            return new Config(geometry, maxSlots, addressSpaces, readonlyMem, on, userAddressLimit, gpaLimit,
                    gpaLimitErrno, guestMemfds);
        }

        /** Another access_ok limit (tests: an architecture's limit other than this machine's). */
        public Config withUserAddressLimit(long limit) {
            return new Config(geometry, maxSlots, addressSpaces, readonlyMem, privateMem, limit, gpaLimit,
                    gpaLimitErrno, guestMemfds);
        }

        /** The architecture's guest-physical bound and the errno for passing it. */
        public Config withGpaLimit(long limit, Errno errno) {
            return new Config(geometry, maxSlots, addressSpaces, readonlyMem, privateMem, userAddressLimit, limit,
                    errno, guestMemfds);
        }

        /** This VM's guest_memfds: GUEST_MEMFD slots are then checked as {@code kvm_gmem_bind} checks them. */
        public Config withGuestMemfds(GuestMemfdTable table) {
            return new Config(geometry, maxSlots, addressSpaces, readonlyMem, privateMem, userAddressLimit, gpaLimit,
                    gpaLimitErrno, table);
        }
    }

    /**
     * Wraps the publication of a new set. Called under the writer lock once every observer accepted the
     * change; must call {@code publish.run()} exactly once (it cannot fail). Throwing before running it
     * vetoes the change like an observer (observers are rolled back); the MMU notifier is the one gate.
     */
    public interface PublishGate {
        void publish(MemslotChange change, Runnable publish);
    }

    private final Config config;
    private final PageGeometry geometry;
    private volatile MemslotSet[] sets; // copy-on-write, one per address space
    private final List<MemslotObserver> observers = new CopyOnWriteArrayList<>();
    private PublishGate gate;
    private volatile long generation; // written under the writer lock, read without it
    /** The guest_memfd range each GUEST_MEMFD slot holds ({@code gmem_file.bindings}), by {@link #key}. */
    private final Map<Long, Binding> bindings = new HashMap<>();

    /**
     * A slot's binding: {@code file} is the {@link GuestMemfdFile} (with a table) or the fd number (without
     * one), {@code [start, start + npages)} the file's pages.
     */
    private record Binding(Object file, int fd, long start, long npages) {
        boolean overlaps(Binding o) {
            boolean same = file instanceof Integer ? file.equals(o.file) : file == o.file; // a file is its object
            return same && start < o.start + o.npages && o.start < start + npages;
        }
    }

    /** A validated change with the binding a GUEST_MEMFD CREATE makes (null otherwise). */
    private record Plan(MemslotChange change, Binding binding) {}

    private static long key(int as, int id) {
        return ((long) as << 32) | (id & 0xffffffffL);
    }

    public Memslots() {
        this(Config.defaults());
    }

    public Memslots(Config config) {
        this.config = config;
        this.geometry = config.geometry();
        MemslotSet[] s = new MemslotSet[config.addressSpaces()];
        for (int as = 0; as < s.length; as++) s[as] = MemslotSet.empty(geometry, as);
        sets = s;
    }

    public Config config() {
        return config;
    }

    public PageGeometry geometry() {
        return geometry;
    }

    /** The current set of address space 0. One volatile read; allocation-free. */
    public MemslotSet current() {
        return sets[0];
    }

    /** The current set of an address space. One volatile read; allocation-free. */
    public MemslotSet current(int addressSpace) {
        return sets[addressSpace];
    }

    /** The number of address spaces. */
    public int addressSpaces() {
        return config.addressSpaces();
    }

    /** Adds an observer; observers are called in the order they were added. */
    public void addObserver(MemslotObserver o) {
        observers.add(o);
    }

    public void removeObserver(MemslotObserver o) {
        observers.remove(o);
    }

    /** Installs the publication gate (the MMU notifier does this itself). At most one. */
    public synchronized void installPublishGate(PublishGate g) {
        if (gate != null) throw new IllegalStateException("a publish gate (MMU notifier) is already installed");
        gate = g;
    }

    /** {@link #setMemslot(int, int, int, long, long, long, int, long)} without guest_memfd. */
    public MemslotChange setMemslot(int addressSpace, int id, int flags, long gpa, long size, long hva) {
        return setMemslot(addressSpace, id, flags, gpa, size, hva, -1, 0);
    }

    /** Deletes slot {@code id} ({@code size 0}); EINVAL when it does not exist. */
    public MemslotChange deleteMemslot(int addressSpace, int id) {
        return setMemslot(addressSpace, id, 0, 0, 0, 0, -1, 0);
    }

    /**
     * {@code KVM_SET_USER_MEMORY_REGION2}: creates, deletes (size 0), moves or changes the flags of slot
     * {@code id} of {@code addressSpace}, validated as KVM does (see the class comment).
     *
     * @return the change that was published, or null when the request matched the slot exactly (KVM returns
     *         0 without doing anything)
     * @throws KvmException with KVM's errno for a refused request; an observer's veto exception unchanged
     */
    public MemslotChange setMemslot(int addressSpace, int id, int flags, long gpa, long size, long hva,
                                    int gmemFd, long gmemOffset) {
        return set(addressSpace, id, flags, gpa, size, hva, gmemFd, null, gmemOffset);
    }

    /**
     * {@link #setMemslot(int, int, int, long, long, long, int, long)} naming the guest_memfd by its handle: with
     * a {@link Config#guestMemfds() table}, a handle that is not this VM's registered file for its fd is EINVAL
     * (as KVM refuses another VM's guest_memfd); without one, the handle's size still bounds the binding.
     */
    public MemslotChange setMemslot(int addressSpace, int id, int flags, long gpa, long size, long hva,
                                    GuestMemfdFile gmem, long gmemOffset) {
        return set(addressSpace, id, flags, gpa, size, hva, gmem == null ? -1 : gmem.fd(), gmem, gmemOffset);
    }

    /**
     * {@code KVM_SET_USER_MEMORY_REGION} (v1): no guest_memfd fields, and {@code kvm_vm_ioctl} refuses flags
     * outside LOG_DIRTY_PAGES|READONLY with EINVAL before anything else.
     */
    public MemslotChange setMemslotV1(int addressSpace, int id, int flags, long gpa, long size, long hva) {
        if ((flags & ~(Memslot.LOG_DIRTY_PAGES | Memslot.READONLY)) != 0) {
            throw new KvmException(Errno.EINVAL, op(addressSpace, id, flags, gpa, size, hva),
                    "KVM_SET_USER_MEMORY_REGION takes only LOG_DIRTY_PAGES|READONLY");
        }
        return set(addressSpace, id, flags, gpa, size, hva, -1, null, 0);
    }

    private static String op(int as, int id, int flags, long gpa, long size, long hva) {
        return "setMemslot(as " + as + " slot " + id + " flags " + flags + " gpa " + Fmt.hex(gpa)
                + " size " + Fmt.hex(size) + " hva " + Fmt.hex(hva) + ")";
    }

    private synchronized MemslotChange set(int addressSpace, int id, int flags, long gpa, long size, long hva,
                                           int gmemFd, GuestMemfdFile gmem, long gmemOffset) {
        String op = op(addressSpace, id, flags, gpa, size, hva);
        Plan plan = classify(op, addressSpace, id, flags, gpa, size, hva, gmemFd, gmem, gmemOffset);
        if (plan == null) return null;
        commit(plan);
        return plan.change();
    }

    private Plan classify(String op, int as, int id, int flags, long gpa, long size, long hva, int gmemFd,
                          GuestMemfdFile gmemFile, long gmemOffset) {
        // check_memory_region_flags()
        int valid = Memslot.LOG_DIRTY_PAGES;
        if (config.privateMem()) valid |= Memslot.GUEST_MEMFD;
        boolean gmem = (flags & Memslot.GUEST_MEMFD) != 0;
        if (gmem) valid &= ~Memslot.LOG_DIRTY_PAGES; // dirty logging private memory is not supported
        if (config.readonlyMem() && !gmem) valid |= Memslot.READONLY; // no emulated MMIO for private memory
        if ((flags & ~valid) != 0) {
            String why = (flags & ~KNOWN_FLAGS) != 0 ? "unknown flags " + Fmt.hex(flags & ~KNOWN_FLAGS)
                    : gmem && !config.privateMem() ? "GUEST_MEMFD not supported by this VM"
                    : gmem ? "GUEST_MEMFD cannot be combined with READONLY or LOG_DIRTY_PAGES"
                    : "READONLY not supported by this VM";
            throw new KvmException(Errno.EINVAL, op, why);
        }
        // general sanity checks
        if (!geometry.isAligned(size)) throw new KvmException(Errno.EINVAL, op, "size not " + geometry + " aligned");
        if (!geometry.isAligned(gpa)) throw new KvmException(Errno.EINVAL, op, "gpa not " + geometry + " aligned");
        if (!geometry.isAligned(hva)) throw new KvmException(Errno.EINVAL, op, "hva not " + geometry + " aligned");
        // access_ok(): the whole range must be user addresses: not wrapping, ending at or below the limit
        if (!AccessOk.ok(hva, size, config.userAddressLimit())) {
            throw new KvmException(Errno.EINVAL, op, "hva range passes the user address limit "
                    + Fmt.hex(config.userAddressLimit()) + " (access_ok)");
        }
        if (gmem && (!geometry.isAligned(gmemOffset) || Long.compareUnsigned(gmemOffset + size, gmemOffset) < 0)) {
            throw new KvmException(Errno.EINVAL, op, "guest_memfd offset " + Fmt.hex(gmemOffset)
                    + " not aligned or wrapping");
        }
        if (as < 0 || as >= config.addressSpaces()) {
            throw new KvmException(Errno.EINVAL, op, "address space " + as + " >= " + config.addressSpaces());
        }
        if (id < 0 || id >= config.maxSlots()) {
            throw new KvmException(Errno.EINVAL, op, "slot id beyond the limit of " + config.maxSlots());
        }
        if (Long.compareUnsigned(gpa + size, gpa) < 0) throw new KvmException(Errno.EINVAL, op, "gpa + size wraps");
        long npages = size >>> geometry.shift();
        if (npages > MAX_NR_PAGES) throw new KvmException(Errno.EINVAL, op, npages + " pages > KVM_MEM_MAX_NR_PAGES");

        MemslotSet set = sets[as];
        Memslot old = set.byId(id);

        if (size == 0) {
            if (old == null) throw new KvmException(Errno.EINVAL, op, "deleting a slot that does not exist");
            return new Plan(new MemslotChange(MemslotChange.Kind.DELETE, old, null), null);
        }

        long baseGfn = gpa >>> geometry.shift();
        MemslotChange.Kind kind;
        if (old == null) {
            kind = MemslotChange.Kind.CREATE;
        } else {
            if (gmem) throw new KvmException(Errno.EINVAL, op, "guest_memfd slots are immutable, only deletable");
            if (hva != old.userspaceAddr()) {
                throw new KvmException(Errno.EINVAL, op, "hva differs from the slot's " + Fmt.hex(old.userspaceAddr()));
            }
            if (npages != old.npages()) throw new KvmException(Errno.EINVAL, op, "size differs from the slot's");
            if (((flags ^ old.flags()) & (Memslot.READONLY | Memslot.GUEST_MEMFD)) != 0) {
                throw new KvmException(Errno.EINVAL, op, "READONLY/GUEST_MEMFD cannot change on an existing slot");
            }
            if (baseGfn != old.baseGfn()) kind = MemslotChange.Kind.MOVE;
            else if (flags != old.flags()) kind = MemslotChange.Kind.FLAGS_ONLY;
            else return null;
        }

        if (kind == MemslotChange.Kind.CREATE || kind == MemslotChange.Kind.MOVE) {
            Memslot m = set.firstOverlapping(baseGfn, baseGfn + npages, id); // the first in gfn order, O(log n)
            if (m != null) {
                throw new KvmException(Errno.EEXIST, op, "overlaps slot " + m.id() + " (gfn "
                        + Fmt.hex(m.baseGfn()) + "+" + Fmt.hex(m.npages()) + ")");
            }
        }
        Binding binding = gmem ? bind(op, gmemFd, gmemFile, gmemOffset, size) : null;
        // the architecture's kvm_arch_prepare_memory_region: the guest-physical range must fit the VM
        if ((kind == MemslotChange.Kind.CREATE || kind == MemslotChange.Kind.MOVE)
                && Long.compareUnsigned(gpa + size, config.gpaLimit()) > 0) {
            throw new KvmException(config.gpaLimitErrno(), op, "gpa range ends past the VM's guest-physical limit "
                    + Fmt.hex(config.gpaLimit()));
        }
        // arm64's: only gmem-only guest_memfd slots (a host-mappable file), there being no private memory to back
        if (binding != null && config.guestMemfds() != null && config.guestMemfds().mappableOnly()
                && !(binding.file() instanceof GuestMemfdFile f && f.hostMappable())) {
            throw new KvmException(Errno.EINVAL, op, "this architecture's KVM backs a slot only with a host-mappable "
                    + "guest_memfd (GUEST_MEMFD_FLAG_MMAP); fd " + gmemFd + " is not");
        }
        Memslot updated = new Memslot(as, id, baseGfn, npages, hva, flags, gmem ? gmemFd : -1, gmem ? gmemOffset : 0);
        return new Plan(new MemslotChange(kind, old, updated), binding);
    }

    /**
     * {@code kvm_gmem_bind}'s checks, in its order: the fd must be open (EBADF) and a guest_memfd of this VM
     * (EINVAL), {@code [offset, offset + size)} must lie in the file with a non-negative offset (EINVAL), and
     * no other binding of the file may overlap it (EINVAL). Without a table only the fd's sign, the handle's size
     * (when given) and the writer's own bindings by fd number can be checked.
     */
    private Binding bind(String op, int fd, GuestMemfdFile given, long offset, long size) {
        if (fd < 0) throw new KvmException(Errno.EBADF, op, "guest_memfd " + fd + " is no descriptor");
        GuestMemfdTable table = config.guestMemfds();
        GuestMemfdFile file = given;
        if (table != null) {
            file = table.byFd(fd);
            if (file == null || (given != null && given != file)) {
                if (!GuestMemfdTable.isOpen(fd)) {
                    throw new KvmException(Errno.EBADF, op, "guest_memfd " + fd + " is not an open descriptor");
                }
                throw new KvmException(Errno.EINVAL, op, "fd " + fd + " is not a guest_memfd of this VM");
            }
        }
        if (offset < 0 || (file != null && Long.compareUnsigned(offset + size, file.size()) > 0)) {
            throw new KvmException(Errno.EINVAL, op, "guest_memfd range " + Fmt.hex(offset) + "+" + Fmt.hex(size)
                    + " is not inside the file" + (file != null ? " of " + Fmt.hex(file.size()) + " bytes" : ""));
        }
        Binding b = new Binding(file != null ? file : (Object) fd, fd, offset >>> geometry.shift(), size >>> geometry.shift());
        for (Binding other : bindings.values()) {
            // a closed file's bindings went with it (kvm_gmem_release); a new file may reuse its fd number
            boolean live = table == null || !(other.file() instanceof GuestMemfdFile f) || table.contains(f, other.fd());
            if (live && other.overlaps(b)) {
                throw new KvmException(table != null ? table.overlapErrno() : Errno.EINVAL, op, "guest_memfd pages " + Fmt.hex(b.start()) + "+"
                        + Fmt.hex(b.npages()) + " overlap another slot's binding of the same file");
            }
        }
        return b;
    }

    private void commit(Plan plan) {
        MemslotChange change = plan.change();
        List<MemslotObserver> obs = List.copyOf(observers);
        int accepted = 0;
        try {
            for (MemslotObserver o : obs) {
                o.beforeCommit(change);
                accepted++;
            }
        } catch (RuntimeException | Error veto) {
            rollBack(obs, accepted, change, veto);
            throw veto;
        }

        Memslot key = change.updated() != null ? change.updated() : change.old();
        int as = key.addressSpace();
        MemslotSet next = sets[as].with(key.id(), change.updated(), generation + 1);
        boolean[] published = {false};
        Runnable publish = () -> {
            if (published[0]) throw new IllegalStateException("published twice");
            MemslotSet[] s = sets.clone();
            s[as] = next;
            sets = s; // volatile write: release the new set to readers
            generation = next.generation();
            if (change.kind() == MemslotChange.Kind.DELETE) bindings.remove(key(as, key.id()));
            if (plan.binding() != null) bindings.put(key(as, key.id()), plan.binding());
            published[0] = true;
        };
        if (gate == null) {
            publish.run();
        } else {
            try {
                gate.publish(change, publish);
            } catch (RuntimeException | Error e) {
                if (published[0]) throw e;
                rollBack(obs, accepted, change, e);
                throw e;
            }
            if (!published[0]) throw new IllegalStateException("publish gate did not publish " + change);
        }

        RuntimeException first = null;
        for (MemslotObserver o : obs) {
            try {
                o.committed(change);
            } catch (RuntimeException e) {
                if (first == null) first = e;
                else first.addSuppressed(e);
            }
        }
        if (first != null) throw first; // the change is published; this reports an observer's failure after it
    }

    private static void rollBack(List<MemslotObserver> obs, int accepted, MemslotChange change, Throwable cause) {
        for (int i = accepted - 1; i >= 0; i--) {
            try {
                obs.get(i).rolledBack(change);
            } catch (RuntimeException e) {
                cause.addSuppressed(e);
            }
        }
    }

    /** The generation of the last published set (0 before any change). Lock-free. */
    public long generation() {
        return generation;
    }
}
