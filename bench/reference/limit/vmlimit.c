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
//
// Output: one JSON line per measurement, {"bench","pages","slots","nsPerOp","thpPercent"}; nsPerOp is the
// best of several repetitions, as in the Rust reference.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
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

int main(int argc, char **argv) {
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
