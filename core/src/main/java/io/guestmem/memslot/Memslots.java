package io.guestmem.memslot;

import io.guestmem.KvmException;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;

import java.util.List;
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
 *   offset) not page aligned: EINVAL; hva range wrapping or reaching the kernel half: EINVAL (KVM's
 *   {@code access_ok}); address space or id beyond the limits: EINVAL; gpa + size wrapping: EINVAL; more
 *   than {@link #MAX_NR_PAGES} pages: EINVAL.</li>
 * <li>Classification: size 0 deletes (deleting a slot that does not exist: EINVAL, as KVM since 5.7); a new
 *   id creates; for an existing id, a GUEST_MEMFD slot or request is immutable (EINVAL), a different hva,
 *   size, or READONLY/GUEST_MEMFD bit is EINVAL, a different base gfn is a MOVE, different flags
 *   (LOG_DIRTY_PAGES) are FLAGS_ONLY, and an identical request changes nothing (no new generation). CREATE
 *   and MOVE overlapping another slot of the address space: EEXIST. GUEST_MEMFD with a negative fd: EBADF
 *   (where KVM's {@code kvm_gmem_bind} fails).</li>
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
     * @param maxSlots      ids must be below this ({@code KVM_CAP_NR_MEMSLOTS})
     * @param addressSpaces {@code KVM_CAP_MULTI_ADDRESS_SPACE} (2 on x86 with SMM, 1 elsewhere)
     * @param readonlyMem   {@code kvm_arch_has_readonly_mem}
     * @param privateMem    {@code kvm_arch_has_private_mem}: GUEST_MEMFD slots allowed
     */
    public record Config(PageGeometry geometry, int maxSlots, int addressSpaces, boolean readonlyMem,
                         boolean privateMem) {
        public Config {
            if (geometry == null) throw new IllegalArgumentException("geometry");
            if (maxSlots < 1 || maxSlots > 65535) throw new IllegalArgumentException("maxSlots " + maxSlots);
            if (addressSpaces < 1 || addressSpaces > 65535) {
                throw new IllegalArgumentException("addressSpaces " + addressSpaces);
            }
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
            return new Config(geometry, n, addressSpaces, readonlyMem, privateMem);
        }

        public Config withAddressSpaces(int n) {
            return new Config(geometry, maxSlots, n, readonlyMem, privateMem);
        }

        public Config withReadonlyMem(boolean on) {
            return new Config(geometry, maxSlots, addressSpaces, on, privateMem);
        }

        public Config withPrivateMem(boolean on) {
            return new Config(geometry, maxSlots, addressSpaces, readonlyMem, on);
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
    public synchronized MemslotChange setMemslot(int addressSpace, int id, int flags, long gpa, long size, long hva,
                                                 int gmemFd, long gmemOffset) {
        String op = "setMemslot(as " + addressSpace + " slot " + id + " flags " + flags + " gpa " + Fmt.hex(gpa)
                + " size " + Fmt.hex(size) + " hva " + Fmt.hex(hva) + ")";
        MemslotChange change = classify(op, addressSpace, id, flags, gpa, size, hva, gmemFd, gmemOffset);
        if (change == null) return null;
        commit(change);
        return change;
    }

    private MemslotChange classify(String op, int as, int id, int flags, long gpa, long size, long hva, int gmemFd,
                                   long gmemOffset) {
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
        // access_ok(): the whole range must be user addresses (below the kernel half, not wrapping)
        if (hva < 0 || hva + size < hva || (size != 0 && hva + size < 0)) {
            throw new KvmException(Errno.EINVAL, op, "hva range is not a user address range");
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
            return new MemslotChange(MemslotChange.Kind.DELETE, old, null);
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
            for (Memslot m : set.slots()) {
                if (m.id() != id && m.baseGfn() < baseGfn + npages && baseGfn < m.endGfn()) {
                    throw new KvmException(Errno.EEXIST, op, "overlaps slot " + m.id() + " (gfn "
                            + Fmt.hex(m.baseGfn()) + "+" + Fmt.hex(m.npages()) + ")");
                }
            }
        }
        if (gmem && gmemFd < 0) throw new KvmException(Errno.EBADF, op, "guest_memfd " + gmemFd);
        Memslot updated = new Memslot(as, id, baseGfn, npages, hva, flags, gmem ? gmemFd : -1, gmem ? gmemOffset : 0);
        return new MemslotChange(kind, old, updated);
    }

    private void commit(MemslotChange change) {
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
