// guestmem's device-shaped benches through rust-vmm vm-memory 0.10 (Debian librust-vm-memory-dev, built
// offline), on the layout of the JMH benches (N slots of 2 MiB with 1 MiB gaps, its own mmap: 4K pages).
//   virtq <slots> [rounds]   the walk of guestmem's VirtqBench (io.guestmem.bench.Virtq: the same xorshift,
//                            shuffle and chains): per chain avail.idx (load Acquire), the ring entry, the
//                            descriptors (read_obj of a 16-byte descriptor), each buffer read_slice'd into or
//                            write_slice'd from a 4 KiB device buffer, the used element and used.idx (store
//                            Release). ns per chain.
//   virtq --chase <nodes> [iters]  a dependent chain of read_obj::<u64> over <nodes> xorshift gpas of 512
//                            slots, each node holding the next gpa. ns per access.
// Prints one JSON line per measurement: {"bench", "pages", "slots", "nsPerOp"}. Written for guestmem.
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::Instant;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

const SLOT: u64 = 2 << 20;
const STRIDE: u64 = 3 << 20;
const QSIZE: u16 = 256;
const DESC: u64 = 0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Desc { addr: u64, len: u32, flags: u16, next: u16 }
// SAFETY: plain integers, no padding (8 + 4 + 2 + 2 bytes).
unsafe impl ByteValued for Desc {}

fn xorshift(mut x: u64) -> u64 { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x }

fn guest(slots: u64) -> GuestMemoryMmap<()> {
    let ranges: Vec<(GuestAddress, usize)> = (0..slots).map(|i| (GuestAddress(i * STRIDE), SLOT as usize)).collect();
    let mem: GuestMemoryMmap<()> = GuestMemoryMmap::from_ranges(&ranges).unwrap();
    for i in 0..slots { for p in (0..SLOT).step_by(4096) { mem.write_obj(1u64, GuestAddress(i * STRIDE + p)).unwrap(); } }
    mem
}

/// The chains of io.guestmem.bench.Virtq written into guest memory; the device-written bytes per round.
fn install(mem: &GuestMemoryMmap<()>, slots: u64) -> u64 {
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let mut idx: Vec<u16> = (0..QSIZE).collect();
    for i in (1..QSIZE as usize).rev() { x = xorshift(x); let j = (x % (i as u64 + 1)) as usize; idx.swap(i, j); }
    let (mut heads, mut chain_written) = (Vec::new(), Vec::new());
    let mut pos = 0usize;
    while pos < QSIZE as usize {
        x = xorshift(x);
        let n = ((1 + x % 4) as usize).min(QSIZE as usize - pos);
        heads.push(idx[pos]);
        let mut w = 0u64;
        for k in 0..n {
            x = xorshift(x);
            let len = 64u32 << (x & 3);
            let write = (x >> 2) & 1 != 0;
            let slot = 1 + (x >> 8) % (slots - 1);
            let d = Desc { addr: slot * STRIDE + (((x >> 20) % (SLOT - 4096)) & !63),
                len, flags: if write { F_WRITE } else { 0 } | if k < n - 1 { F_NEXT } else { 0 },
                next: if k < n - 1 { idx[pos + k + 1] } else { 0 } };
            if write { w += len as u64; }
            mem.write_obj(d, GuestAddress(DESC + 16 * idx[pos + k] as u64)).unwrap();
        }
        chain_written.push(w);
        pos += n;
    }
    mem.write_obj(0u32, GuestAddress(AVAIL)).unwrap();
    let mut written = 0;
    for k in 0..QSIZE as usize {
        mem.write_obj(heads[k % heads.len()], GuestAddress(AVAIL + 4 + 2 * k as u64)).unwrap();
        written += chain_written[k % heads.len()];
    }
    mem.write_slice(&[0u8; 4 + 8 * 256 + 2], GuestAddress(USED)).unwrap();
    written
}

struct Device { avail_idx: u16, last: u16, used: u16, buf: [u8; 4096] }

impl Device {
    /// One round: the driver publishes 256 entries, the device walks them; the bytes written to the guest.
    fn round(&mut self, mem: &GuestMemoryMmap<()>) -> u64 {
        self.avail_idx = self.avail_idx.wrapping_add(QSIZE);
        mem.store(self.avail_idx, GuestAddress(AVAIL + 2), Ordering::Release).unwrap();
        let mut total = 0u64;
        while self.last != mem.load::<u16>(GuestAddress(AVAIL + 2), Ordering::Acquire).unwrap() {
            let head: u16 = mem.read_obj(GuestAddress(AVAIL + 4 + 2 * (self.last % QSIZE) as u64)).unwrap();
            let (mut written, mut di, mut n) = (0u32, head, 0);
            loop {
                assert!(di < QSIZE && n < QSIZE as usize, "bad chain at head {}", head);
                let d: Desc = mem.read_obj(GuestAddress(DESC + 16 * di as u64)).unwrap();
                assert!(d.len as usize <= self.buf.len(), "descriptor {} too long", di);
                let b = &mut self.buf[..d.len as usize];
                if d.flags & F_WRITE != 0 { mem.write_slice(b, GuestAddress(d.addr)).unwrap(); written += d.len; }
                else { mem.read_slice(b, GuestAddress(d.addr)).unwrap(); }
                if d.flags & F_NEXT == 0 { break; }
                di = d.next;
                n += 1;
            }
            let e = USED + 4 + 8 * (self.used % QSIZE) as u64;
            mem.write_obj(head as u32, GuestAddress(e)).unwrap();
            mem.write_obj(written, GuestAddress(e + 4)).unwrap();
            self.last = self.last.wrapping_add(1);
            self.used = self.used.wrapping_add(1);
            mem.store(self.used, GuestAddress(USED + 2), Ordering::Release).unwrap();
            total += written as u64;
        }
        total
    }
}

fn virtq(slots: u64, rounds: u64) {
    assert!(slots >= 2, "virtq needs at least 2 slots");
    let mem = guest(slots);
    let expect = install(&mem, slots);
    let mut dev = Device { avail_idx: 0, last: 0, used: 0, buf: [0x5a; 4096] };
    let got = dev.round(&mem);
    assert!(got == expect, "virtq round wrote {} bytes, expected {}", got, expect);
    eprintln!("virtq: {} slots: {} device-written bytes per round", slots, expect);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let mut acc = 0u64;
        for _ in 0..rounds { acc = acc.wrapping_add(dev.round(&mem)); }
        black_box(acc);
        best = best.min(t.elapsed().as_nanos() as f64 / (rounds * QSIZE as u64) as f64);
    }
    println!("{{\"bench\":\"virtq_walk\",\"pages\":\"4k\",\"slots\":{},\"nsPerOp\":{:.3}}}", slots, best);
}

/// n nodes at the first n distinct 64-byte-aligned xorshift gpas of 512 slots, linked in that order.
fn chase(nodes: usize, iters: u64) {
    let slots = 512u64;
    let mem = guest(slots);
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let mut gpas = Vec::with_capacity(nodes);
    let mut seen = std::collections::HashSet::new();
    while gpas.len() < nodes {
        x = xorshift(x);
        let g = (x % slots) * STRIDE + (((x >> 20) % (SLOT - 4096)) & !63);
        if seen.insert(g) { gpas.push(g); }
    }
    for i in 0..nodes { mem.write_obj(gpas[(i + 1) % nodes], GuestAddress(gpas[i])).unwrap(); }
    let mut best = f64::MAX;
    let mut p = gpas[0];
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..iters { p = mem.read_obj::<u64>(GuestAddress(p)).unwrap(); }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    black_box(p);
    println!("{{\"bench\":\"chase_gpa\",\"pages\":\"4k\",\"slots\":{},\"nsPerOp\":{:.3}}}", nodes, best);
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.get(1).map(String::as_str) == Some("--chase") {
        let nodes = a.get(2).map(|s| s.parse().unwrap()).unwrap_or(1024);
        let iters = a.get(3).map(|s| s.parse().unwrap()).unwrap_or(20_000_000);
        return chase(nodes, iters);
    }
    let slots = a.get(1).map(|s| s.parse().unwrap()).unwrap_or(512);
    let rounds = a.get(2).map(|s| s.parse().unwrap()).unwrap_or(20_000);
    virtq(slots, rounds);
}
