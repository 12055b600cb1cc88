// Reference timings of rust-vmm vm-memory 0.10 (Debian librust-vm-memory-dev, built offline) on the
// layout of guestmem's JMH benches: N slots of 2 MiB with 1 MiB gaps, the same xorshift gpa sequence.
// Prints one JSON line per measurement: {"bench", "slots", "nsPerOp"}.
use std::hint::black_box;
use std::time::Instant;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap};
fn main() {
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
