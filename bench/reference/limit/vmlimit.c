// The raw limit for guestmem's guest-memory benches: what plain C costs on the same layout, with nothing
// between the program and the memory. Written for guestmem (not derived from other code).
//
//   vmlimit <slots> [iters]       N slots of 2 MiB with 1 MiB gaps, each its own mmap, on 4K pages
//                                 (MADV_NOHUGEPAGE) and on THP (2 MiB aligned, MADV_HUGEPAGE), every page
//                                 written first. read_u64: one u64 load at a random address taken from a
//                                 precomputed array of hvas (TLB and cache misses only, no lookup).
//                                 write_4k: memcpy of 4 KiB to a random page. The random sequence is the
//                                 xorshift of bench/reference/vm-memory and of the JMH benches.
//   vmlimit --pagemap <MiB> [reps] /proc/self/pagemap over a contiguous prefaulted region, 4K and THP:
//                                 pagemap_batch = pread of 131072 entries at a time (what Pagemap.read
//                                 does), pagemap_per_page = one 8-byte pread per page. ns per page.
//   vmlimit --uffd <MiB> [reps]   userfaultfd fault service: a private anonymous region (4K pages,
//                                 MADV_NOHUGEPAGE) registered for MISSING faults; a second thread reads one
//                                 byte of every page in order while this one reads each fault and answers it
//                                 with UFFDIO_COPY of the page (uffd_copy_4k) or of its 64 KiB block
//                                 (uffd_copy_64k, the block a lazy restore serves). ns per 4 KiB page,
//                                 from the first touch to the last page served.
//   vmlimit --virtq <slots> [rounds] a device walking a split virtqueue of 256 entries in slot 0 of the layout
//                                 (desc at gpa 0, avail at 0x1000, used at 0x2000), 4K and THP, with the chains
//                                 of guestmem's VirtqBench (io.guestmem.bench.Virtq: the same xorshift, shuffle
//                                 and cut); every gpa -> hva through a flat table with one entry per MiB, the
//                                 least translation any VMM does (start and end of each buffer checked).
//                                 virtq_walk: ns per chain. virtq_walk_dirty: the same walk recording every
//                                 write the device makes in a dirty bitmap as guestmem does (a full fence,
//                                 then an atomic OR), what tracking costs in C.
//   vmlimit --chase <nodes> [iters] a dependent chain of u64 loads over <nodes> nodes at xorshift gpas of the
//                                 layout of 512 slots, 4K and THP. chase_hva: a node holds the next node's host
//                                 address (the hardware's dependent-load latency); chase_gpa: it holds the
//                                 next gpa, translated through the flat table. ns per access.
//   vmlimit --lock <MiB> [reps]   the system calls of guestmem's MemslotLock lock + unlock of a prefaulted
//                                 region (LockBench), 4K and THP: /proc/self/maps read whole (the VMAs),
//                                 MADV_POPULATE_WRITE per 32 MiB, io_uring_setup(1) and IORING_REGISTER_BUFFERS
//                                 of the range (buffers of at most 1 GiB: the long-term pin), one pread of its
//                                 pagemap entries (every page present); then IORING_UNREGISTER_BUFFERS and close.
//                                 lock_unlock: ns per lock + unlock pair (slots column: MiB).
//
// Output: one JSON line per measurement, {"bench","pages","slots","nsPerOp","thpPercent"}; nsPerOp is the
// best of several repetitions, as in the Rust reference.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SLOT (2ull << 20)
#define GAP (1ull << 20)
#define NGPA (1u << 16)
#define PMD (2ull << 20)

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "vmlimit: %s: %s\n", what, strerror(errno));
    exit(1);
}

// AnonHugePages of this process in bytes, from smaps_rollup (the kernel's count of PMD-mapped THP).
static unsigned long long anon_huge_bytes(void) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1) break;
    fclose(f);
    return kb << 10;
}

// A private anonymous mapping of len bytes, PMD aligned; THP-advised or THP-forbidden; every page written.
static uint8_t *map_region(size_t len, int thp) {
    size_t span = len + PMD;
    uint8_t *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) die("mmap");
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + PMD - 1) & ~(uintptr_t)(PMD - 1));
    if (p > raw) munmap(raw, p - raw);
    size_t tail = (raw + span) - (p + len);
    if (tail) munmap(p + len, tail);
    if (madvise(p, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE)) die("madvise");
    for (size_t off = 0; off < len; off += 4096) *(volatile uint64_t *)(p + off) = 1;
    return p;
}

static void emit(const char *bench, int thp, unsigned long long slots, double ns, unsigned long long huge,
                 unsigned long long size) {
    printf("{\"bench\":\"%s\",\"pages\":\"%s\",\"slots\":%llu,\"nsPerOp\":%.3f,\"thpPercent\":%.1f}\n", bench,
           thp ? "thp" : "4k", slots, ns, size ? 100.0 * huge / size : 0.0);
    fflush(stdout);
}

static void layout_bench(unsigned long long slots, unsigned long long iters, int thp) {
    uint8_t **base = calloc(slots, sizeof *base);
    unsigned long long huge0 = anon_huge_bytes();
    for (unsigned long long i = 0; i < slots; i++) base[i] = map_region(SLOT, thp);
    unsigned long long huge = anon_huge_bytes() - huge0;
    // The same sequence as the Rust reference: slot s = x % slots, offset ((x >> 20) % (SLOT - 4096)) & ~7.
    uint64_t *hva = malloc(NGPA * sizeof *hva), *whva = malloc(NGPA * sizeof *whva);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (unsigned i = 0; i < NGPA; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        uint64_t s = x % slots, off = ((x >> 20) % (SLOT - 4096)) & ~7ull;
        hva[i] = (uint64_t)(uintptr_t)(base[s] + off);
        whva[i] = hva[i] & ~4095ull;
    }
    double best = 1e300;
    for (int r = 0; r < 5; r++) {
        uint64_t acc = 0;
        double t = now_ns();
        for (unsigned long long i = 0; i < iters; i++) acc += *(volatile const uint64_t *)(uintptr_t)hva[i & (NGPA - 1)];
        double ns = (now_ns() - t) / iters;
        __asm__ volatile("" : : "r"(acc) : "memory");
        if (ns < best) best = ns;
    }
    emit("read_u64", thp, slots, best, huge, slots * SLOT);
    static uint8_t buf[4096];
    memset(buf, 7, sizeof buf);
    unsigned long long wit = iters / 20 ? iters / 20 : 1;
    best = 1e300;
    for (int r = 0; r < 5; r++) {
        double t = now_ns();
        for (unsigned long long i = 0; i < wit; i++) {
            memcpy((void *)(uintptr_t)whva[i & (NGPA - 1)], buf, sizeof buf);
            __asm__ volatile("" : : : "memory"); // the copy must happen, every time
        }
        double ns = (now_ns() - t) / wit;
        if (ns < best) best = ns;
    }
    emit("write_4k", thp, slots, best, huge, slots * SLOT);
    for (unsigned long long i = 0; i < slots; i++) munmap(base[i], SLOT);
    free(base); free(hva); free(whva);
}

static void pagemap_bench(unsigned long long mib, int reps, int thp) {
    size_t len = (size_t)mib << 20, pages = len / 4096;
    unsigned long long huge0 = anon_huge_bytes();
    uint8_t *p = map_region(len, thp);
    unsigned long long huge = anon_huge_bytes() - huge0;
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open /proc/self/pagemap");
    const size_t chunk = 131072;
    uint64_t *buf = malloc(chunk * 8), one;
    off_t first = (off_t)((uintptr_t)p / 4096) * 8;
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        double t = now_ns();
        for (size_t done = 0; done < pages; done += chunk) {
            size_t n = pages - done < chunk ? pages - done : chunk;
            if (pread(fd, buf, n * 8, first + (off_t)done * 8) != (ssize_t)(n * 8)) die("pread pagemap");
        }
        double ns = (now_ns() - t) / pages;
        if (ns < best) best = ns;
    }
    emit("pagemap_batch", thp, 0, best, huge, len);
    best = 1e300;
    for (int r = 0; r < reps; r++) {
        double t = now_ns();
        for (size_t i = 0; i < pages; i++)
            if (pread(fd, &one, 8, first + (off_t)i * 8) != 8) die("pread pagemap");
        double ns = (now_ns() - t) / pages;
        if (ns < best) best = ns;
    }
    emit("pagemap_per_page", thp, 0, best, huge, len);
    close(fd);
    free(buf);
    munmap(p, len);
}

struct toucher { volatile uint8_t *p; size_t pages; unsigned long sum; };

static void *touch_all(void *arg) {
    struct toucher *t = arg;
    unsigned long sum = 0;
    for (size_t i = 0; i < t->pages; i++) sum += t->p[i * 4096];
    t->sum = sum;
    return NULL;
}

// One pass: a fresh registered region, every page touched by another thread and served here. ns per page.
static double uffd_pass(size_t len, size_t block, const uint8_t *src) {
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    madvise(p, len, MADV_NOHUGEPAGE);
    int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
    if (uffd < 0) die("userfaultfd");
    struct uffdio_api api = {.api = UFFD_API};
    if (ioctl(uffd, UFFDIO_API, &api)) die("UFFDIO_API");
    struct uffdio_register reg = {.range = {(uintptr_t)p, len}, .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (ioctl(uffd, UFFDIO_REGISTER, &reg)) die("UFFDIO_REGISTER");
    struct toucher t = {p, len / 4096, 0};
    pthread_t th;
    double start = now_ns();
    if (pthread_create(&th, NULL, touch_all, &t)) die("pthread_create");
    for (size_t served = 0; served < len;) {
        struct uffd_msg msg;
        if (read(uffd, &msg, sizeof msg) != sizeof msg) die("read uffd");
        if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
        uintptr_t at = (uintptr_t)msg.arg.pagefault.address & ~(uintptr_t)(block - 1);
        struct uffdio_copy c = {.dst = at, .src = (uintptr_t)(src + (at - (uintptr_t)p)), .len = block};
        if (ioctl(uffd, UFFDIO_COPY, &c) && errno != EEXIST) die("UFFDIO_COPY");
        served += block;
    }
    pthread_join(th, NULL);
    double ns = (now_ns() - start) / (len / 4096);
    close(uffd);
    munmap(p, len);
    return ns;
}

static void uffd_bench(unsigned long long mib, int reps) {
    size_t len = (size_t)mib << 20;
    uint8_t *src = map_region(len, 0);
    for (size_t i = 0; i < len; i += 64) src[i] = (uint8_t)(i >> 12);
    size_t blocks[] = {4096, 64 << 10};
    const char *names[] = {"uffd_copy_4k", "uffd_copy_64k"};
    for (int b = 0; b < 2; b++) {
        double best = 1e300;
        for (int r = 0; r < reps; r++) {
            double ns = uffd_pass(len, blocks[b], src);
            if (ns < best) best = ns;
        }
        emit(names[b], 0, 0, best, 0, len);
    }
    // src stays mapped: map_region over-allocates for alignment, and the program ends here
}

// ------------------------------------------------------------------------------------------ flat gpa table
// One entry per MiB of guest-physical space: the host address of that MiB, 0 in a gap.
static uint64_t *flat;
static uint64_t flat_n;

static void flat_build(uint8_t **base, unsigned long long slots) {
    flat_n = slots * 3;
    flat = calloc(flat_n, sizeof *flat);
    for (unsigned long long i = 0; i < slots; i++)
        for (int m = 0; m < 2; m++) flat[i * 3 + m] = (uint64_t)(uintptr_t)(base[i] + ((uint64_t)m << 20));
}

static void fault(uint64_t gpa) {
    fprintf(stderr, "vmlimit: gpa 0x%llx is not RAM\n", (unsigned long long)gpa);
    exit(1);
}

static inline uint8_t *g2h(uint64_t gpa, uint64_t len) {
    uint64_t i = gpa >> 20, j = (gpa + len - 1) >> 20;
    if (__builtin_expect(j >= flat_n || flat[i] == 0, 0)) fault(gpa);
    if (__builtin_expect(j != i && flat[j] != flat[i] + ((j - i) << 20), 0)) fault(gpa + len - 1);
    return (uint8_t *)(uintptr_t)(flat[i] + (gpa & ((1u << 20) - 1)));
}

static uint64_t xorshift(uint64_t x) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    return x;
}

// ------------------------------------------------------------------------------------------ virtq walk
#define QSIZE 256
#define VQ_DESC 0x0ull
#define VQ_AVAIL 0x1000ull
#define VQ_USED 0x2000ull
#define F_NEXT 1
#define F_WRITE 2
struct desc { uint64_t addr; uint32_t len; uint16_t flags, next; };

// The chains of io.guestmem.bench.Virtq, written into guest memory; returns the device-written bytes per round.
static uint64_t virtq_install(unsigned long long slots) {
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int idx[QSIZE], heads[QSIZE], chains = 0;
    uint64_t chain_written[QSIZE] = {0};
    for (int i = 0; i < QSIZE; i++) idx[i] = i;
    for (int i = QSIZE - 1; i > 0; i--) {
        x = xorshift(x);
        int j = (int)(x % (uint64_t)(i + 1)), t = idx[i];
        idx[i] = idx[j]; idx[j] = t;
    }
    struct desc *d = (struct desc *)g2h(VQ_DESC, QSIZE * sizeof(struct desc));
    for (int pos = 0; pos < QSIZE;) {
        x = xorshift(x);
        int n = 1 + (int)(x % 4);
        if (n > QSIZE - pos) n = QSIZE - pos;
        heads[chains] = idx[pos];
        for (int k = 0; k < n; k++) {
            int e = idx[pos + k];
            x = xorshift(x);
            d[e].len = 64u << (x & 3);
            int write = (x >> 2) & 1;
            uint64_t slot = 1 + (x >> 8) % (slots - 1);
            d[e].addr = slot * (SLOT + GAP) + (((x >> 20) % (SLOT - 4096)) & ~63ull);
            d[e].flags = (write ? F_WRITE : 0) | (k < n - 1 ? F_NEXT : 0);
            d[e].next = k < n - 1 ? idx[pos + k + 1] : 0;
            if (write) chain_written[chains] += d[e].len;
        }
        chains++;
        pos += n;
    }
    uint16_t *avail = (uint16_t *)g2h(VQ_AVAIL, 4 + 2 * QSIZE);
    uint64_t written = 0;
    avail[0] = avail[1] = 0;
    for (int k = 0; k < QSIZE; k++) { avail[2 + k] = heads[k % chains]; written += chain_written[k % chains]; }
    memset(g2h(VQ_USED, 4 + 8 * QSIZE + 2), 0, 4 + 8 * QSIZE + 2);
    return written;
}

static uint8_t devbuf[4096];
static uint16_t vq_avail_idx, vq_last, vq_used;

// The dirty log of virtq_walk_dirty: one bit per host page of guest-physical space, set after each write the
// device makes, the way guestmem's GuestMemory records its own writes (a full fence, then an atomic OR
// unless the bits are already set): the cost of tracking, measured in C.
static uint64_t *dirty_bits;
static unsigned page_shift;
static int track;

static inline void mark(uint64_t gpa, uint64_t len) {
    if (!track) return;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    for (uint64_t p = gpa >> page_shift, last = (gpa + len - 1) >> page_shift; p <= last; p++) {
        uint64_t bit = 1ull << (p & 63), *w = &dirty_bits[p >> 6];
        if ((__atomic_load_n(w, __ATOMIC_RELAXED) & bit) != bit) __atomic_fetch_or(w, bit, __ATOMIC_SEQ_CST);
    }
}

// One round: the driver publishes 256 entries, the device walks them. Returns the bytes written to the guest.
static uint64_t virtq_round(void) {
    vq_avail_idx += QSIZE;
    __atomic_store_n((uint16_t *)g2h(VQ_AVAIL + 2, 2), vq_avail_idx, __ATOMIC_RELEASE);
    uint64_t total = 0;
    while (vq_last != __atomic_load_n((uint16_t *)g2h(VQ_AVAIL + 2, 2), __ATOMIC_ACQUIRE)) {
        uint16_t head = *(uint16_t *)g2h(VQ_AVAIL + 4 + 2 * (vq_last % QSIZE), 2);
        uint32_t written = 0, di = head;
        for (int n = 0;; n++) {
            if (di >= QSIZE || n >= QSIZE) { fprintf(stderr, "vmlimit: bad chain at head %u\n", head); exit(1); }
            struct desc dd;
            memcpy(&dd, g2h(VQ_DESC + 16ull * di, 16), 16);
            if (dd.len > sizeof devbuf) { fprintf(stderr, "vmlimit: descriptor %u too long\n", di); exit(1); }
            if (dd.flags & F_WRITE) { memcpy(g2h(dd.addr, dd.len), devbuf, dd.len); mark(dd.addr, dd.len); written += dd.len; }
            else memcpy(devbuf, g2h(dd.addr, dd.len), dd.len);
            if (!(dd.flags & F_NEXT)) break;
            di = dd.next;
        }
        uint64_t eg = VQ_USED + 4 + 8 * (vq_used % QSIZE);
        uint32_t *e = (uint32_t *)g2h(eg, 8);
        e[0] = head;
        mark(eg, 4);
        e[1] = written;
        mark(eg + 4, 4);
        vq_last++;
        vq_used++;
        __atomic_store_n((uint16_t *)g2h(VQ_USED + 2, 2), vq_used, __ATOMIC_RELEASE);
        mark(VQ_USED + 2, 2);
        total += written;
    }
    return total;
}

static uint8_t **layout_map(unsigned long long slots, int thp, unsigned long long *huge) {
    uint8_t **base = calloc(slots, sizeof *base);
    unsigned long long huge0 = anon_huge_bytes();
    for (unsigned long long i = 0; i < slots; i++) base[i] = map_region(SLOT, thp);
    *huge = anon_huge_bytes() - huge0;
    flat_build(base, slots);
    return base;
}

static void layout_unmap(uint8_t **base, unsigned long long slots) {
    for (unsigned long long i = 0; i < slots; i++) munmap(base[i], SLOT);
    free(base);
    free(flat);
    flat = NULL;
}

static void virtq_bench(unsigned long long slots, unsigned long long rounds, int thp) {
    unsigned long long huge;
    uint8_t **base = layout_map(slots, thp, &huge);
    vq_avail_idx = vq_last = vq_used = 0;
    memset(devbuf, 0x5a, sizeof devbuf);
    uint64_t expect = virtq_install(slots);
    uint64_t got = virtq_round();
    if (got != expect || *(uint16_t *)g2h(VQ_USED + 2, 2) != QSIZE) {
        fprintf(stderr, "vmlimit: virtq round wrote %llu bytes, expected %llu\n", (unsigned long long)got, (unsigned long long)expect);
        exit(1);
    }
    page_shift = (unsigned)__builtin_ctzl((unsigned long)sysconf(_SC_PAGESIZE));
    dirty_bits = calloc(((flat_n << 20) >> page_shift) / 64 + 1, sizeof *dirty_bits);
    for (track = 0; track < 2; track++) {
        double best = 1e300;
        for (int r = 0; r < 5; r++) {
            double t = now_ns();
            for (unsigned long long i = 0; i < rounds; i++) got += virtq_round();
            double ns = (now_ns() - t) / (rounds * QSIZE);
            if (ns < best) best = ns;
        }
        __asm__ volatile("" : : "r"(got) : "memory");
        emit(track ? "virtq_walk_dirty" : "virtq_walk", thp, slots, best, huge, slots * SLOT);
    }
    track = 0;
    free(dirty_bits);
    fprintf(stderr, "vmlimit: virtq %llu slots: %llu device-written bytes per round\n", slots, (unsigned long long)expect);
    layout_unmap(base, slots);
}

// ------------------------------------------------------------------------------------------ dependent chase
// n nodes at the first n distinct 64-byte-aligned xorshift gpas of the 512-slot layout, linked in that order
// (the last back to the first). A node holds the next gpa (chase_gpa) or the next node's hva (chase_hva).
static void chase_bench(unsigned long long nodes, unsigned long long iters, int thp) {
    const unsigned long long slots = 512;
    unsigned long long huge;
    uint8_t **base = layout_map(slots, thp, &huge);
    uint64_t *gpa = calloc(nodes, sizeof *gpa), x = 0x9E3779B97F4A7C15ull;
    for (unsigned long long i = 0; i < nodes;) {
        x = xorshift(x);
        uint64_t g = (x % slots) * (SLOT + GAP) + (((x >> 20) % (SLOT - 4096)) & ~63ull);
        // distinct: a node is never overwritten by a later one (the chain must visit all n)
        if (*(uint64_t *)g2h(g, 8) == 0xC4A5E0000000001ull) continue;
        *(uint64_t *)g2h(g, 8) = 0xC4A5E0000000001ull;
        gpa[i++] = g;
    }
    for (int mode = 0; mode < 2; mode++) {
        for (unsigned long long i = 0; i < nodes; i++) {
            uint64_t nx = gpa[(i + 1) % nodes];
            *(uint64_t *)g2h(gpa[i], 8) = mode ? nx : (uint64_t)(uintptr_t)g2h(nx, 8);
        }
        double best = 1e300;
        uint64_t p = mode ? gpa[0] : (uint64_t)(uintptr_t)g2h(gpa[0], 8);
        for (int r = 0; r < 5; r++) {
            double t = now_ns();
            if (mode) for (unsigned long long i = 0; i < iters; i++) p = *(volatile uint64_t *)g2h(p, 8);
            else for (unsigned long long i = 0; i < iters; i++) p = *(volatile uint64_t *)(uintptr_t)p;
            double ns = (now_ns() - t) / iters;
            if (ns < best) best = ns;
        }
        __asm__ volatile("" : : "r"(p) : "memory");
        printf("{\"bench\":\"%s\",\"pages\":\"%s\",\"slots\":%llu,\"nodes\":%llu,\"nsPerOp\":%.3f,\"thpPercent\":%.1f}\n",
               mode ? "chase_gpa" : "chase_hva", thp ? "thp" : "4k", nodes, nodes, best, 100.0 * huge / (slots * SLOT));
        fflush(stdout);
    }
    for (unsigned long long i = 0; i < nodes; i++) *(uint64_t *)g2h(gpa[i], 8) = 1;
    free(gpa);
    layout_unmap(base, slots);
}

// ------------------------------------------------------------------------------------------ memslot lock
static void lock_bench(unsigned long long mib, int reps, int thp) {
    size_t len = (size_t)mib << 20, pages = len / (size_t)sysconf(_SC_PAGESIZE);
    unsigned long long huge0 = anon_huge_bytes();
    uint8_t *p = map_region(len, thp);
    unsigned long long huge = anon_huge_bytes() - huge0;
    int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pm < 0) die("open /proc/self/pagemap");
    uint64_t *pfns = malloc(pages * 8);
    static char maps[1 << 20];
    size_t nbuf = (len + (1ull << 30) - 1) >> 30;
    struct iovec *iov = calloc(nbuf, sizeof *iov);
    for (size_t i = 0; i < nbuf; i++) {
        iov[i].iov_base = p + (i << 30);
        iov[i].iov_len = len - (i << 30) < (1ull << 30) ? len - (i << 30) : (1ull << 30);
    }
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        double t = now_ns();
        int mf = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
        if (mf < 0) die("open /proc/self/maps");
        while (read(mf, maps, sizeof maps) > 0) {}
        close(mf);
        for (size_t off = 0; off < len; off += 32ull << 20)
            if (madvise(p + off, len - off < (32ull << 20) ? len - off : (32ull << 20), MADV_POPULATE_WRITE)) die("madvise(MADV_POPULATE_WRITE)");
        struct io_uring_params params;
        memset(&params, 0, sizeof params);
        int ring = (int)syscall(__NR_io_uring_setup, 1, &params);
        if (ring < 0) die("io_uring_setup");
        if (syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, iov, (unsigned)nbuf)) die("IORING_REGISTER_BUFFERS");
        if (pread(pm, pfns, pages * 8, (off_t)((uintptr_t)p / sysconf(_SC_PAGESIZE)) * 8) != (ssize_t)(pages * 8)) die("pread pagemap");
        for (size_t i = 0; i < pages; i++)
            if (!(pfns[i] >> 63)) { fprintf(stderr, "vmlimit: page %zu not present after the pin\n", i); exit(1); }
        if (syscall(__NR_io_uring_register, ring, IORING_UNREGISTER_BUFFERS, NULL, 0)) die("IORING_UNREGISTER_BUFFERS");
        close(ring);
        double ns = now_ns() - t;
        if (ns < best) best = ns;
    }
    emit("lock_unlock", thp, mib, best, huge, len);
    free(iov);
    free(pfns);
    close(pm);
    munmap(p, len);
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "--lock") == 0) {
        unsigned long long mib = strtoull(argv[2], NULL, 10);
        int reps = argc > 3 ? atoi(argv[3]) : 10;
        if (mib == 0 || mib % 2 || reps <= 0) { fprintf(stderr, "usage: vmlimit --lock <even MiB> [reps]\n"); return 2; }
        lock_bench(mib, reps, 0);
        lock_bench(mib, reps, 1);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "--virtq") == 0) {
        unsigned long long slots = strtoull(argv[2], NULL, 10), rounds = argc > 3 ? strtoull(argv[3], NULL, 10) : 20000;
        if (slots < 2 || rounds == 0) { fprintf(stderr, "usage: vmlimit --virtq <slots >= 2> [rounds]\n"); return 2; }
        virtq_bench(slots, rounds, 0);
        virtq_bench(slots, rounds, 1);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "--chase") == 0) {
        unsigned long long nodes = strtoull(argv[2], NULL, 10), iters = argc > 3 ? strtoull(argv[3], NULL, 10) : 20000000;
        if (nodes < 2 || nodes > 200000 || iters == 0) { fprintf(stderr, "usage: vmlimit --chase <nodes 2..200000> [iters]\n"); return 2; }
        chase_bench(nodes, iters, 0);
        chase_bench(nodes, iters, 1);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "--uffd") == 0) {
        unsigned long long mib = strtoull(argv[2], NULL, 10);
        int reps = argc > 3 ? atoi(argv[3]) : 5;
        if (mib == 0 || reps <= 0) { fprintf(stderr, "usage: vmlimit --uffd <MiB> [reps]\n"); return 2; }
        uffd_bench(mib, reps);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "--pagemap") == 0) {
        unsigned long long mib = strtoull(argv[2], NULL, 10);
        int reps = argc > 3 ? atoi(argv[3]) : 5;
        if (mib == 0 || mib % 2 || reps <= 0) { fprintf(stderr, "usage: vmlimit --pagemap <even MiB> [reps]\n"); return 2; }
        pagemap_bench(mib, reps, 0);
        pagemap_bench(mib, reps, 1);
        return 0;
    }
    if (argc < 2 || argc > 3) { fprintf(stderr, "usage: vmlimit <slots> [iters] | vmlimit --pagemap <MiB> [reps]\n"); return 2; }
    unsigned long long slots = strtoull(argv[1], NULL, 10);
    unsigned long long iters = argc > 2 ? strtoull(argv[2], NULL, 10) : 20000000ull;
    if (slots == 0 || iters == 0) { fprintf(stderr, "vmlimit: slots and iters must be positive\n"); return 2; }
    layout_bench(slots, iters, 0);
    layout_bench(slots, iters, 1);
    return 0;
}
