// Reference timings of rust-vmm vm-memory 0.10 (Debian librust-vm-memory-dev, built offline) on the
// layout of guestmem's JMH benches: N slots of 2 MiB with 1 MiB gaps, the same xorshift gpa sequence.
// Prints one JSON line per measurement: {"bench", "slots", "nsPerOp"}.
use std::hint::black_box;
use std::time::Instant;
use std::sync::Arc;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
// `--memslots N [REPS]`: memslot updates, the rows of guestmem's MemslotUpdateBench. N regions built one
// insert_region at a time (build_all, ns for the whole build), then region N/2 removed and inserted again
// (insert_remove, ns per change) and region N/2-1 moved up and back, each move a remove_region plus an
// insert_region of the same size elsewhere (move, ns per move). Regions are mmapped (NORESERVE) before the clock runs.
fn memslots(n: u64, reps: usize) {
    let (slot, gap) = (2u64 << 20, 1u64 << 20);
    let region = |i: u64| Arc::new(GuestRegionMmap::new(MmapRegion::<()>::new(slot as usize).unwrap(), GuestAddress(i * (slot + gap))).unwrap());
    let regions: Vec<_> = (0..n).map(region).collect();
    let mut best = f64::MAX;
    let mut mem = GuestMemoryMmap::<()>::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut m = GuestMemoryMmap::<()>::new();
        for r in &regions { m = m.insert_region(r.clone()).unwrap(); }
        best = best.min(t.elapsed().as_nanos() as f64);
        mem = m;
    }
    println!("{{\"bench\":\"build_all\",\"slots\":{},\"nsPerOp\":{:.0}}}", n, best);
    let mid = n / 2;
    let (mb, size) = (GuestAddress(mid * (slot + gap)), slot);
    let (mem_wo, mid_region) = mem.remove_region(mb, size).unwrap();
    let mut best = f64::MAX;
    for _ in 0..5 { let t = Instant::now();
        for _ in 0..reps { let m = mem_wo.insert_region(mid_region.clone()).unwrap(); black_box(m.remove_region(mb, size).unwrap()); }
        best = best.min(t.elapsed().as_nanos() as f64 / (2 * reps) as f64); }
    println!("{{\"bench\":\"insert_remove\",\"slots\":{},\"nsPerOp\":{:.1}}}", n, best);
    let k = mid.saturating_sub(1);
    let (home, away) = (GuestAddress(k * (slot + gap)), GuestAddress((n + 1) * (slot + gap)));
    let moved = region(n + 1);
    let home_region = regions[k as usize].clone();
    let mut best = f64::MAX;
    for _ in 0..5 { let t = Instant::now();
        for _ in 0..reps {
            let (m, _) = mem.remove_region(home, size).unwrap(); let m = m.insert_region(moved.clone()).unwrap();
            let (m, _) = m.remove_region(away, size).unwrap(); black_box(m.insert_region(home_region.clone()).unwrap());
        }
        best = best.min(t.elapsed().as_nanos() as f64 / (2 * reps) as f64); }
    println!("{{\"bench\":\"move\",\"slots\":{},\"nsPerOp\":{:.1}}}", n, best);
}
fn main() {
    if std::env::args().nth(1).as_deref() == Some("--memslots") {
        let n: u64 = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(512);
        let reps: usize = std::env::args().nth(3).map(|s| s.parse().unwrap()).unwrap_or(200);
        return memslots(n, reps);
    }
    let slots: u64 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(512);
    let (slot, gap) = (2u64 << 20, 1u64 << 20);
    let ranges: Vec<(GuestAddress, usize)> = (0..slots).map(|i| (GuestAddress(i * (slot + gap)), slot as usize)).collect();
    let mem: GuestMemoryMmap<()> = GuestMemoryMmap::from_ranges(&ranges).unwrap();
    let n = 1usize << 16;
    let mut x: u64 = 0x9E3779B97F4A7C15;
    let gpas: Vec<u64> = (0..n).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        let s = x % slots; s * (slot + gap) + ((x >> 20) % (slot - 4096)) & !7 }).collect();
    for i in 0..slots { for p in (0..slot).step_by(4096) { mem.write_obj(1u64, GuestAddress(i * (slot + gap) + p)).unwrap(); } }
    let buf = [7u8; 4096];
    // optional second argument: iterations per repetition (the runner's --quick pass uses fewer)
    let iters: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(20_000_000);
    let bench = |name: &str, f: &dyn Fn(usize) -> u64| {
        let mut best = f64::MAX;
        for _ in 0..5 { let t = Instant::now(); let mut acc = 0u64;
            for i in 0..iters { acc = acc.wrapping_add(f(i & (n - 1))); }
            black_box(acc); best = best.min(t.elapsed().as_nanos() as f64 / iters as f64); }
        println!("{{\"bench\":\"{}\",\"slots\":{},\"nsPerOp\":{:.3}}}", name, slots, best);
    };
    bench("get_host_address", &|i| mem.get_host_address(GuestAddress(gpas[i])).unwrap() as u64);
    bench("read_obj_u64", &|i| mem.read_obj::<u64>(GuestAddress(gpas[i])).unwrap());
    let wgpas: Vec<u64> = gpas.iter().map(|g| g & !4095).collect();
    let bench_w = |name: &str| { let mut best = f64::MAX; let it = (iters / 20).max(1);
        for _ in 0..5 { let t = Instant::now();
            for i in 0..it { mem.write_slice(&buf, GuestAddress(wgpas[i & (n - 1)])).unwrap(); }
            best = best.min(t.elapsed().as_nanos() as f64 / it as f64); }
        println!("{{\"bench\":\"{}\",\"slots\":{},\"nsPerOp\":{:.3}}}", name, slots, best); };
    bench_w("write_slice_4k");
}
