package io.guestmem.kvm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

import io.guestmem.KvmException;
import io.guestmem.kvmapi.KvmCap;
import io.guestmem.kvmapi.KvmDevice;
import io.guestmem.kvmapi.VmFd;
import io.guestmem.memslot.Memslot;
import io.guestmem.memslot.Memslots;
import io.guestmem.memslot.PageGeometry;
import io.guestmem.sys.Arch;
import io.guestmem.sys.Errno;
import io.guestmem.sys.Fmt;
import io.guestmem.sys.Posix;
import io.guestmem.sys.SyscallException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The proof against the real kernel: one seeded random sequence of slot changes (create, move, flag changes,
 * delete; v1 and v2 ioctls; guest_memfd bindings with offsets where the VM offers guest_memfd; unaligned,
 * wrapping, out-of-range and high hvas and gpas; ids and address spaces past the limits) goes to a real KVM VM
 * through its raw VM fd, so KVM itself answers, and to a {@link Memslots} configured from that VM
 * ({@link KvmVm#memslotsConfig()}, no mirror). Every change must get the same answer (the errno, or success),
 * and at the end KVM must hold exactly the writer's slots (probed through the VM fd: overlaps, dirty logs,
 * identical requests and deletes). Page size, the access_ok limit, the slot limit, address spaces, the
 * guest-physical limit and guest_memfd support all come from the machine.
 *
 * <p>A disagreement fails with the seed, the step, the request and both answers, and the steps before it.
 */
class MemslotDifferentialTest {
    static final long PAGE = Posix.PAGE_SIZE;
    static final int STEPS = 300;
    /** The size of each guest_memfd, in pages. */
    static final int GMEM_PAGES = 64;
    /** The guest RAM the ordinary hvas point into, in pages. */
    static final int RAM_PAGES = 512;
    static final int GM = Memslot.GUEST_MEMFD, LOG = Memslot.LOG_DIRTY_PAGES, RO = Memslot.READONLY;
    static int agreed, changes, seeds;

    @BeforeAll
    static void kvm() {
        KvmAvailable.assume();
    }

    @AfterAll
    static void report() {
        if (seeds > 0) System.out.println("memslot differential: " + agreed + "/" + changes + " changes agree over " + seeds + " seeds");
    }

    /** One request: KVM_SET_USER_MEMORY_REGION (v1) or _REGION2. */
    record Req(boolean v1, int as, int id, int flags, long gpa, long size, long hva, int gmemFd, long gmemOffset,
               String what) {
        @Override
        public String toString() {
            return (v1 ? "REGION v1" : "REGION2") + " as " + as + " id " + id + " flags " + flags + " gpa " + Fmt.hex(gpa)
                    + " size " + Fmt.hex(size) + " hva " + Fmt.hex(hva)
                    + ((flags & GM) != 0 ? " gmem fd " + gmemFd + " offset " + Fmt.hex(gmemOffset) : "") + " (" + what + ")";
        }
    }

    /**
     * What the sequence draws from: the writer's configuration (limits from the machine), whether region v2
     * exists, guest RAM for hvas, and the descriptors a GUEST_MEMFD request may name (none: no guest_memfd).
     */
    record Space(boolean region2, Memslots.Config config, long hvaBase, int[] files, int foreignFd, int plainFd) {
        long limit() { return config.userAddressLimit(); }
        long gpaLimit() { return config.gpaLimit(); }
        int maxSlots() { return config.maxSlots(); }
    }

    /** The VM under test, the writer configured from it, and what the sequence draws from. */
    static final class Rig implements AutoCloseable {
        final KvmVm vm;
        final KvmVm other;
        final GuestRam ram;
        final Memslots model;
        final Memslots.Config config;
        final long limit;      // access_ok's
        final long gpaLimit;   // the VM's guest-physical end (-1: none)
        final int maxSlots;
        final int probeId;     // never used by the sequence: the layout probes' slot
        final List<KvmGuestMemfd> files = new ArrayList<>(); // this VM's
        KvmGuestMemfd foreign;
        int plainFd = -1;
        String gmemSkipped;

        Rig() {
            long type = 0;
            if (Arch.CURRENT.isX86()) {
                // guest_memfd slots on x86 need a VM type with private memory where the default lacks it
                try (KvmDevice d = KvmDevice.open()) {
                    int types = d.checkExtension(KvmCap.VM_TYPES);
                    if ((types & (1 << 1)) != 0) type = 1; // KVM_X86_SW_PROTECTED_VM
                }
            }
            KvmVm v = null;
            if (type != 0) {
                try {
                    v = KvmVm.open(new KvmVm.Options(type, true, 0));
                    if (!v.capabilities().guestMemfd()) {
                        v.close();
                        v = null;
                    }
                } catch (RuntimeException e) {
                    System.out.println("memslot differential: VM type " + type + " refused (" + e.getMessage() + "), using the default");
                }
                if (v == null) type = 0;
            }
            if (v == null) v = KvmVm.open();
            vm = v;
            config = vm.memslotsConfig();
            model = new Memslots(config);
            limit = config.userAddressLimit();
            gpaLimit = config.gpaLimit();
            maxSlots = config.maxSlots();
            probeId = maxSlots - 1;
            ram = GuestRam.anonymous(RAM_PAGES * PAGE);
            KvmCapabilities caps = vm.capabilities();
            if (!config.privateMem()) {
                gmemSkipped = "guest_memfd bindings skipped: this VM offers no GUEST_MEMFD slots (KVM_CAP_GUEST_MEMFD "
                        + (caps.guestMemfd() ? 1 : 0) + ", region v2 " + vm.usesRegion2() + ", VM type " + type
                        + "); GUEST_MEMFD requests are still compared (EINVAL from both)";
                other = null;
            } else {
                files.add(vm.createGuestMemfd(GMEM_PAGES * PAGE, 0));
                files.add(vm.createGuestMemfd(GMEM_PAGES * PAGE, 0));
                other = KvmVm.open(new KvmVm.Options(type, true, 0));
                foreign = other.createGuestMemfd(GMEM_PAGES * PAGE, 0);
                plainFd = Posix.open("/dev/null", Posix.O_RDONLY);
            }
        }

        Space space() {
            int[] fds = files.stream().mapToInt(KvmGuestMemfd::fd).toArray();
            return new Space(vm.usesRegion2(), config, ram.addr, fds, foreign == null ? -1 : foreign.fd(), plainFd);
        }

        @Override
        public void close() {
            if (plainFd >= 0) Posix.close(plainFd);
            ram.close();
            if (other != null) other.close();
            vm.close();
        }
    }

    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 4})
    void kvmAndTheWriterAnswerEveryChangeAlike(long seed) {
        try (Rig rig = new Rig()) {
            if (seed == 1) {
                System.out.println("memslot differential on " + Arch.CURRENT.name() + ", " + PageGeometry.host()
                        + ": access_ok limit " + Fmt.hex(rig.limit) + ", gpa limit " + Fmt.hex(rig.gpaLimit) + " ("
                        + rig.config.gpaLimitErrno() + "), " + rig.maxSlots + " slots, " + rig.config.addressSpaces()
                        + " address spaces, READONLY " + rig.config.readonlyMem() + ", region v2 " + rig.vm.usesRegion2());
                if (rig.gmemSkipped != null) System.out.println(rig.gmemSkipped);
            }
            SplittableRandom rnd = new SplittableRandom(seed * 0x9E3779B97F4A7C15L);
            List<String> log = new ArrayList<>();
            Map<Long, Memslot> slots = new TreeMap<>(); // what both accepted, by (as, id)
            List<int[]> usedIds = new ArrayList<>();
            Space space = rig.space();
            int agree = 0;
            for (int step = 0; step < STEPS; step++) {
                Req r = next(rnd, space, slots);
                usedIds.add(new int[] {r.as(), r.id()});
                int kvm = kvm(rig.vm.vmFd(), r);
                int mine = model(rig.model, r);
                String line = step + ": " + r + " -> KVM " + name(kvm) + ", writer " + name(mine);
                log.add(line);
                if (kvm != mine) {
                    fail("memslot differential, seed " + seed + ", step " + step + ": " + r + "\n  KVM answered " + name(kvm)
                            + ", the writer " + name(mine) + "\n  the steps before it:\n    "
                            + String.join("\n    ", log.subList(Math.max(0, log.size() - 25), log.size() - 1)));
                }
                agree++;
                syncSlots(rig.model, slots);
            }
            checkLayout(rig, seed, usedIds, log);
            synchronized (MemslotDifferentialTest.class) {
                agreed += agree;
                changes += STEPS;
                seeds++;
            }
            System.out.println("memslot differential seed " + seed + ": " + agree + "/" + STEPS + " changes agree, "
                    + rig.model.current(0).size() + " slots at the end");
        }
    }

    // ------------------------------------------------------------------ the sequence

    static Req next(SplittableRandom rnd, Space sp, Map<Long, Memslot> slots) {
        List<Memslot> live = new ArrayList<>(slots.values());
        boolean v1 = !sp.region2() || rnd.nextInt(4) == 0;
        int pick = rnd.nextInt(100);
        if (!live.isEmpty() && pick < 35) {
            // a change to an existing slot: move, flags, delete, or a refused modification
            Memslot m = live.get(rnd.nextInt(live.size()));
            long size = m.npages() * PAGE, gpa = m.baseGfn() * PAGE;
            int kind = rnd.nextInt(9);
            // dirty logging only over guest RAM (see the note on high hvas below): elsewhere, move instead
            boolean inRam = m.userspaceAddr() - sp.hvaBase() >= 0 && m.userspaceAddr() - sp.hvaBase() < RAM_PAGES * PAGE;
            if ((kind == 1 || kind == 7) && !inRam && (m.flags() & LOG) == 0) kind = 0;
            return switch (kind) {
                case 0, 6 -> new Req(v1, m.addressSpace(), m.id(), m.flags(), gridGpa(rnd), size, m.userspaceAddr(), -1, 0, "move");
                case 1, 7 -> new Req(v1, m.addressSpace(), m.id(), m.flags() ^ LOG, gpa, size, m.userspaceAddr(), -1, 0, "toggle dirty logging");
                case 2 -> new Req(v1, m.addressSpace(), m.id(), m.flags() ^ RO, gpa, size, m.userspaceAddr(), -1, 0, "toggle READONLY");
                case 3 -> new Req(v1, m.addressSpace(), m.id(), m.flags(), gpa, size + PAGE, m.userspaceAddr(), -1, 0, "resize");
                case 4 -> new Req(v1, m.addressSpace(), m.id(), m.flags(), gpa, size, m.userspaceAddr() + PAGE, -1, 0, "new hva");
                default -> new Req(v1, m.addressSpace(), m.id(), 0, 0, 0, rnd.nextBoolean() ? 0 : m.userspaceAddr(), -1, 0, "delete");
            };
        }
        // A new slot (or a delete): two requests in three are well-formed, the third gets exactly one odd field,
        // so that every check is reached with everything before it passing.
        int odd = rnd.nextInt(3) == 0 ? 1 + rnd.nextInt(7) : 0;
        int as = odd != 1 ? rnd.nextInt(sp.config().addressSpaces())
                : rnd.nextBoolean() ? sp.config().addressSpaces() : 0xffff;
        int id = odd != 2 ? freshId(rnd, as, slots) : switch (rnd.nextInt(3)) {
            case 0 -> sp.maxSlots();             // the first id past KVM_CAP_NR_MEMSLOTS
            case 1 -> Math.min(sp.maxSlots() + 1, 0xffff);
            default -> 0xffff;
        };
        int flags = odd != 3 ? switch (rnd.nextInt(8)) {
            case 0 -> LOG;
            case 1 -> RO;
            case 2 -> LOG | RO;
            case 3, 4 -> GM;
            default -> 0;
        } : switch (rnd.nextInt(4)) {
            case 0 -> 8;                          // unknown
            case 1 -> GM | LOG;
            case 2 -> GM | RO;
            default -> 0x80000000;
        };
        long pages = (flags & GM) != 0 ? 1 + rnd.nextInt(4) : 1 + rnd.nextInt(16);
        long size = odd != 4 ? (rnd.nextInt(12) == 0 ? 0 : pages * PAGE) : switch (rnd.nextInt(3)) {
            case 0 -> pages * PAGE + PAGE / 2;                       // unaligned
            case 1 -> PAGE > 4096 ? pages * PAGE + 4096 : pages * PAGE + 512;
            default -> (Memslots.MAX_NR_PAGES + 1) * PAGE;           // too many pages
        };
        long gpa = odd != 5 ? (rnd.nextInt(16) == 0 && sp.gpaLimit() != -1 ? sp.gpaLimit() - size : gridGpa(rnd))
                : switch (rnd.nextInt(4)) {
            case 0 -> gridGpa(rnd) + PAGE / 2;                       // unaligned
            case 1 -> -PAGE;                                         // gpa + size wraps
            case 2 -> sp.gpaLimit() == -1 ? 1L << 60 : sp.gpaLimit() - PAGE; // crosses the VM's limit
            default -> sp.gpaLimit() == -1 ? 1L << 61 : sp.gpaLimit();
        };
        // Dirty logging over a high hva is left out: arm64 refuses LOG_DIRTY_PAGES over a VM_PFNMAP VMA, a
        // VMA walk the writer does not make, and the vvar page near the stack is one.
        boolean highOk = (flags & LOG) == 0;
        long hva = odd != 6 ? (highOk && rnd.nextInt(10) == 0 ? sp.limit() - size // ends exactly at the limit
                : rnd.nextInt(30) == 0 && highOk ? 0 : sp.hvaBase() + rnd.nextInt(RAM_PAGES - 16) * PAGE)
                : switch (rnd.nextInt(highOk ? 7 : 1)) {
            case 1 -> sp.limit();                                    // starts there
            case 2 -> sp.limit() - PAGE;                             // crosses it (unless one page)
            case 3 -> 1L << 62;
            case 4 -> -PAGE;                                         // wraps / kernel half
            case 5 -> (1L << 56) | sp.hvaBase();                     // a tag in the top byte
            case 6 -> Long.MAX_VALUE & ~(PAGE - 1);
            default -> sp.hvaBase() + 8;                             // unaligned
        };
        int fd = -1;
        long offset = 0;
        if ((flags & GM) != 0) {
            if (sp.files().length == 0) {
                fd = 3;
                offset = rnd.nextInt(4) * PAGE;
            } else if (odd != 7 && (odd != 0 || rnd.nextInt(3) != 0)) {
                fd = sp.files()[rnd.nextInt(sp.files().length)];
                offset = rnd.nextInt((int) Math.max(1, GMEM_PAGES + 1 - pages)) * PAGE;
            } else {
                fd = sp.files()[rnd.nextInt(sp.files().length)];
                switch (rnd.nextInt(8)) {
                    case 0 -> fd = sp.foreignFd();                   // another VM's guest_memfd
                    case 1 -> fd = sp.plainFd();                     // no guest_memfd
                    case 2 -> fd = 1 << 29;                          // no open descriptor
                    case 3 -> fd = -1;
                    case 4 -> offset = PAGE / 2;                     // unaligned
                    case 5 -> offset = (GMEM_PAGES - 1) * PAGE;      // runs past the file's end unless one page
                    case 6 -> offset = Long.MIN_VALUE;               // negative
                    default -> offset = -PAGE;                       // offset + size wraps
                }
            }
        }
        return new Req(v1, as, id, flags, gpa, size, hva, fd, offset, (size == 0 ? "delete" : "create") + (odd > 0 ? ", odd field " + odd : ""));
    }

    /** Mostly an id of 0..11 that address space {@code as} does not use yet (a create), else any of them. */
    static int freshId(SplittableRandom rnd, int as, Map<Long, Memslot> slots) {
        List<Integer> free = new ArrayList<>();
        for (int id = 0; id < 12; id++) if (!slots.containsKey(((long) as << 32) | id)) free.add(id);
        if (free.isEmpty() || rnd.nextInt(8) == 0) return rnd.nextInt(12);
        return free.get(rnd.nextInt(free.size()));
    }

    /** Slot-sized steps of 8 pages, so sixteen-page requests overlap each other often. */
    static long gridGpa(SplittableRandom rnd) {
        return (0x100L + rnd.nextInt(64) * 8L) * PAGE;
    }

    // ------------------------------------------------------------------ the two answers

    /** KVM's answer through the raw VM fd: 0 or the errno. */
    static int kvm(VmFd fd, Req r) {
        int slot = (r.as() << 16) | (r.id() & 0xffff);
        try {
            if (r.v1()) fd.setUserMemoryRegion(slot, r.flags(), r.gpa(), r.size(), r.hva());
            else fd.setUserMemoryRegion2(slot, r.flags(), r.gpa(), r.size(), r.hva(), r.gmemOffset(), r.gmemFd());
            return 0;
        } catch (SyscallException e) {
            return e.errno();
        }
    }

    /** The writer's answer: 0 (a published change or nothing to change) or the errno it refused with. */
    static int model(Memslots ms, Req r) {
        try {
            if (r.v1()) ms.setMemslotV1(r.as(), r.id(), r.flags(), r.gpa(), r.size(), r.hva());
            else ms.setMemslot(r.as(), r.id(), r.flags(), r.gpa(), r.size(), r.hva(), r.gmemFd(), r.gmemOffset());
            return 0;
        } catch (KvmException e) {
            return e.errno().number;
        }
    }

    static String name(int errno) {
        if (errno == 0) return "success";
        Errno e = Errno.of(errno);
        return e == null ? "errno " + errno : e.name();
    }

    static void syncSlots(Memslots ms, Map<Long, Memslot> slots) {
        slots.clear();
        for (int as = 0; as < ms.addressSpaces(); as++)
            for (Memslot m : ms.current(as).slots()) slots.put(((long) as << 32) | m.id(), m);
    }

    // ------------------------------------------------------------------ the final layouts

    /**
     * KVM holds exactly the writer's slots: for each, a one-page probe slot at its first and last gfn overlaps
     * (EEXIST) and one just past its end does not unless another slot is there; KVM_GET_DIRTY_LOG answers
     * ENOENT exactly where dirty logging is off; the identical request is accepted with nothing to change
     * (hva, size and READONLY match); and deleting it succeeds. Then every id the sequence used is gone in KVM.
     */
    static void checkLayout(Rig rig, long seed, List<int[]> usedIds, List<String> log) {
        VmFd fd = rig.vm.vmFd();
        String where = "memslot differential, seed " + seed + ", final layout: ";
        for (int as = 0; as < rig.model.addressSpaces(); as++) {
            for (Memslot m : rig.model.current(as).slots()) {
                int slot = m.kvmSlot(), probe = (as << 16) | rig.probeId;
                long gpa = m.baseGfn() * PAGE, end = m.endGfn() * PAGE;
                assertEquals(Errno.EEXIST.number, create(fd, probe, gpa, rig.ram.addr), where + "KVM has nothing at " + m);
                assertEquals(Errno.EEXIST.number, create(fd, probe, end - PAGE, rig.ram.addr), where + "KVM's slot is shorter than " + m);
                if (rig.model.current(as).findByGfn(m.endGfn()) == null && Long.compareUnsigned(end + PAGE, rig.gpaLimit) <= 0) {
                    assertEquals(0, create(fd, probe, end, rig.ram.addr), where + "KVM's slot is longer than " + m);
                    assertEquals(0, delete(fd, probe), where + "probe delete");
                }
                int dirty;
                try {
                    fd.getDirtyLog(slot, m.npages());
                    dirty = 0;
                } catch (SyscallException e) {
                    dirty = e.errno();
                }
                assertEquals(m.logsDirty() ? 0 : Errno.ENOENT.number, dirty, where + "dirty logging differs for " + m);
                if (!m.guestMemfd()) {
                    // identical: 0 with nothing changed, or EINVAL where KVM's hva/size/READONLY differ
                    int same;
                    try {
                        if (rig.vm.usesRegion2()) fd.setUserMemoryRegion2(slot, m.flags(), gpa, m.npages() * PAGE, m.userspaceAddr(), 0, 0);
                        else fd.setUserMemoryRegion(slot, m.flags(), gpa, m.npages() * PAGE, m.userspaceAddr());
                        same = 0;
                    } catch (SyscallException e) {
                        same = e.errno();
                    }
                    assertEquals(0, same, where + "KVM's slot differs in hva, size or READONLY from " + m);
                }
                assertEquals(0, delete(fd, slot), where + "KVM cannot delete " + m);
            }
        }
        for (int[] u : usedIds) {
            if (u[0] >= rig.model.addressSpaces() || u[1] >= rig.maxSlots) continue;
            assertEquals(Errno.EINVAL.number, delete(fd, (u[0] << 16) | u[1]),
                    where + "KVM still has as " + u[0] + " id " + u[1] + ", which the writer does not");
        }
    }

    static int create(VmFd fd, int slot, long gpa, long hva) {
        try {
            fd.setUserMemoryRegion(slot, 0, gpa, PAGE, hva);
            return 0;
        } catch (SyscallException e) {
            return e.errno();
        }
    }

    static int delete(VmFd fd, int slot) {
        try {
            fd.setUserMemoryRegion(slot, 0, 0, 0, 0);
            return 0;
        } catch (SyscallException e) {
            return e.errno();
        }
    }
}
