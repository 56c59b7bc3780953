//! Tail latency of one nonce consume (memory and SQLite stores) at a steady live size: keys
//! expire 300 s after their consume (a token's lifetime) and simulated time advances so that
//! `--rows` keys are live, so growth, sweeps, purges and WAL checkpoints all happen while the
//! consumes are timed. Each consume is timed on its own; a consume during which the thread was
//! preempted (an involuntary context switch, from getrusage) is counted apart, since on a busy
//! machine the scheduler, not the store, made it slow; so is one during which the thread was
//! off its CPU without any context switch (its wall time exceeds the thread's CPU time, which
//! leaves out time the hypervisor ran something else on the virtual CPU: steal), since then the
//! host made it slow. A consume that blocked (a voluntary switch: a lock, I/O) stays the store's. The "own" columns are the store's: neither preempted nor stolen. The
//! "all" columns keep every consume. Steal over the whole run (from /proc/stat) is printed too.
//!
//! The machine's floor, in the same run: after every [`FLOOR_EVERY`]th timed consume, a no-op as
//! long as that many mean consumes (arithmetic on registers, no memory) is timed and attributed
//! the same way, so the no-ops span as much time as the consumes. What stalls a stretch of code
//! that touches no memory and calls nothing is not the store's: interrupts (on this VM the
//! timer's, 250 a second and 10-20 µs each, some far longer, charged to whatever thread they
//! land in), so a store's maximum is only as low as the no-op's. (A no-op after every consume
//! doubled the timing's system calls between consumes, which raised the consumes' p99 by about
//! 0.2 µs.)
//!
//! `cargo run --release -p vlexivo-core --example store_latency -- [--rows 100000]
//!     [--ops 200000] [--store memory|sqlite|all] [--interrupts]`
//!
//! `--interrupts` also counts, for each timed call, the interrupts handled on the thread's CPU
//! while it ran (kernel tracepoints through `perf_event_open`, which needs no hardware counter:
//! root, or `perf_event_paranoid` ≤ 1, and tracefs): the local timer's, devices', and the
//! softirqs run on their way out. A consume or no-op during which one was handled stays "own";
//! the "quiet" maximum is that of the own ones during which none was. Inter-processor interrupts
//! are not counted as someone else's: a TLB shootdown may be the process's own doing (the
//! store's helper thread). Off by default: reading the counters around every call costs the
//! consumes' p99 about a microsecond (their caches), where the timer-tick test above is free.
//!
//! Prints a table and one `BENCH {json}` line per store for scripts/bench.sh, with the
//! process's resident memory after the untimed fill and after the timed consumes.
//!
//! `... -- --slowest 20` also prints the memory store's 20 slowest own consumes and what each
//! did (page faults, a timer tick, its shard's table rebuilt, its slab or queue lengthened, a
//! part made inside the consume, expired entries removed), from its shard's state read after
//! every timed consume (outside the timing); and times a memory no-op beside the register one,
//! random line writes over an old buffer as large as the process: as many as 8 consumes make
//! after every 8th consume, and as many as one makes after every consume (as many timings, as
//! short, as the consumes).
//!
//! `... --example store_latency -- --rss` instead prints the resident memory of a process
//! holding one default memory store (no other store made) when made and at 1,000, 10,000,
//! 100,000 and 990,000 live nonces.
//!
//! `... --example store_latency -- --fresh 50000` instead times the first 50,000 consumes of a
//! fresh default store after 200 untimed ones, made a second before (what
//! bindings-python/bench/bench_verify.py's store does while it mints its tokens): CPU µs per
//! consume and the page faults taken in them.
#![allow(unsafe_code)] // getrusage, perf_event_open

use perf_event_open_sys as perf;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vlexivo_core::store::memory::ShardProbe;
use vlexivo_core::store::{MemoryStore, NonceStore, SqliteStore};

const TTL: u64 = 300;
const T0: u64 = 1_900_000_000;

struct Opts {
    interrupts: bool,
    rows: u64,
    ops: u64,
    store: String,
    rss: bool,
    fresh: Option<u64>,
    slowest: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        interrupts: false,
        rows: 100_000,
        ops: 200_000,
        store: "all".into(),
        rss: false,
        fresh: None,
        slowest: 0,
    };
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--rss") {
        args.remove(i);
        o.rss = true;
    }
    if let Some(i) = args.iter().position(|a| a == "--interrupts") {
        args.remove(i);
        o.interrupts = true;
    }
    for pair in args.chunks(2) {
        let v = pair.get(1).unwrap_or_else(|| panic!("{} needs a value", pair[0]));
        match pair[0].as_str() {
            "--rows" => o.rows = v.parse().expect("--rows N"),
            "--ops" => o.ops = v.parse().expect("--ops N"),
            "--store" => o.store = v.clone(),
            "--fresh" => o.fresh = Some(v.parse().expect("--fresh N")),
            "--slowest" => o.slowest = v.parse().expect("--slowest N"),
            other => panic!("unknown option {other}"),
        }
    }
    o
}

/// This thread's involuntary context switches, page faults and voluntary context switches
/// (it blocked: on a lock, on I/O) so far.
fn preemptions() -> (i64, i64, i64) {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, u.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: initialised by the successful call above (and zeroed before it).
    let u = unsafe { u.assume_init() };
    (u.ru_nivcsw, u.ru_minflt + u.ru_majflt, u.ru_nvcsw)
}

/// This thread's CPU time so far (ns): exact to the call (getrusage's lags to the last tick),
/// and without the time the hypervisor gave this virtual CPU's host thread to others.
fn cpu_ns() -> i64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes a timespec into the pointer it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    t.tv_sec * 1_000_000_000 + t.tv_nsec
}

/// The tracepoints counted as interrupts (see the module's doc), under tracefs's `events/`.
const INTERRUPT_TRACEPOINTS: [&str; 3] =
    ["irq_vectors/local_timer_entry", "irq/irq_handler_entry", "irq/softirq_entry"];

/// A group of per-thread counters of [`INTERRUPT_TRACEPOINTS`], read together.
struct Interrupts {
    /// The group's leader first, then its members (kept open for the group's life).
    counters: Vec<File>,
}

impl Interrupts {
    /// The calling thread's counters; None where the kernel does not let this process count them.
    fn open() -> Option<Self> {
        let mut counters: Vec<File> = Vec::new();
        for tracepoint in INTERRUPT_TRACEPOINTS {
            let id = ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"]
                .iter()
                .find_map(|dir| std::fs::read_to_string(format!("{dir}/{tracepoint}/id")).ok())?;
            let mut attr = perf::bindings::perf_event_attr {
                type_: perf::bindings::PERF_TYPE_TRACEPOINT,
                size: std::mem::size_of::<perf::bindings::perf_event_attr>() as u32,
                config: id.trim().parse().ok()?,
                read_format: u64::from(perf::bindings::PERF_FORMAT_GROUP),
                ..Default::default()
            };
            let leader = counters.first().map_or(-1, |f| f.as_raw_fd());
            // SAFETY: `attr` is a whole perf_event_attr that outlives the call; pid 0 and cpu -1
            // count this thread on any CPU.
            let fd = unsafe {
                perf::perf_event_open(&mut attr, 0, -1, leader, perf::bindings::PERF_FLAG_FD_CLOEXEC.into())
            };
            if fd < 0 {
                return None;
            }
            // SAFETY: a new descriptor, owned by nothing else.
            counters.push(unsafe { File::from_raw_fd(fd) });
        }
        Some(Self { counters })
    }

    /// Interrupts handled on this thread so far.
    fn count(&self) -> u64 {
        // PERF_FORMAT_GROUP: the number of counters, then each one's value.
        let mut buf = [0u8; 8 * (1 + INTERRUPT_TRACEPOINTS.len())];
        (&self.counters[0]).read_exact(&mut buf).expect("reading the interrupt counters");
        buf.chunks_exact(8).skip(1).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).sum()
    }
}

/// Whether to count interrupts (`--interrupts`).
static COUNT_INTERRUPTS: AtomicBool = AtomicBool::new(false);

/// The interrupt counters of the thread that times (they count the thread that opened them:
/// `main` does, before any timing); None when not asked for, or not countable here.
fn interrupts() -> Option<&'static Interrupts> {
    static COUNTERS: OnceLock<Option<Interrupts>> = OnceLock::new();
    if !COUNT_INTERRUPTS.load(Ordering::Relaxed) {
        return None;
    }
    COUNTERS.get_or_init(Interrupts::open).as_ref()
}

/// Wall time a consume may exceed its thread's CPU time by before it counts as stolen.
const STOLEN_NS: i64 = 10_000;
/// Own times counted as slow, for consumes and no-ops alike.
const SLOW_NS: u32 = 20_000;
/// Consumes per timed no-op.
const FLOOR_EVERY: u64 = 8;

/// Steal time of the whole machine so far (ms, from /proc/stat; 0 where there is none).
fn steal_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu = stat.lines().next().unwrap_or_default();
    // cpu user nice system idle iowait irq softirq steal, in USER_HZ (100 a second) ticks.
    cpu.split_whitespace().nth(8).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0) * 10
}

/// A key of the real shape: account (25) + ':' + a 24-character base64url nonce = 50 bytes.
fn key(i: u64, out: &mut String) {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    out.clear();
    out.push_str("acct_3f9c2a71d04e8b65a1c7:");
    // splitmix64: random-looking, distinct keys (B-tree inserts land at random pages).
    let mut x = i;
    for _ in 0..2 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        for k in 0..12 {
            out.push(B64[((z >> (k * 5)) & 63) as usize] as char);
        }
    }
}

/// This process's resident memory (MB, from /proc/self/status; 0 where there is none).
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse::<f64>().ok()));
    kb.unwrap_or(0.0) / 1024.0
}

/// Resident memory of a default memory store as it fills (nothing expires).
fn rss_curve() {
    let base = rss_mb();
    let store = MemoryStore::new();
    // Its helper thread makes the parts it keeps ready.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mut line = format!("rss MB: process before the store {base:.1}; store made {:.1}", rss_mb());
    let mut k = String::with_capacity(64);
    let mut n = 0;
    let mut json = format!("\"base\":{base:.1},\"made\":{:.1}", rss_mb());
    for (label, upto) in [("1k", 1_000u64), ("10k", 10_000), ("100k", 100_000), ("990k", 990_000)] {
        while n < upto {
            key(n, &mut k);
            assert!(store.consume(&k, T0 + TTL, T0).unwrap().is_fresh());
            n += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        let rss = rss_mb();
        line.push_str(&format!("; {label} live {rss:.1}"));
        json.push_str(&format!(",\"live_{label}\":{rss:.1}"));
    }
    println!("{line}");
    println!("BENCH {{\"bench\":\"store_rss\",{json}}}");
}

/// The first `n` consumes of a fresh default store after 200, made a second before.
fn fresh(n: u64) {
    let store = MemoryStore::new();
    let mut k = String::with_capacity(64);
    let keys: Vec<String> = (0..n + 200)
        .map(|i| {
            key(i, &mut k);
            k.clone()
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(1));
    for k in &keys[..200] {
        assert!(store.consume(k, T0 + TTL, T0).unwrap().is_fresh());
    }
    let (f0, c0) = (preemptions().1, cpu_ns());
    for k in &keys[200..] {
        assert!(store.consume(k, T0 + TTL, T0).unwrap().is_fresh());
    }
    let (f1, c1) = (preemptions().1, cpu_ns());
    let us = (c1 - c0) as f64 / 1000.0 / n as f64;
    println!(
        "fresh default store, {n} consumes after 200: {us:.3} CPU µs per consume, {} page faults",
        f1 - f0
    );
    println!("BENCH {{\"bench\":\"store_fresh\",\"n\":{n},\"cpu_us\":{us:.4},\"faults\":{}}}", f1 - f0);
}

struct Run {
    all: Vec<u32>,
    own: Vec<u32>,
    /// The no-op's times (every one, and its own as for a consume), and its length (ns).
    floor_all: Vec<u32>,
    floor_own: Vec<u32>,
    floor_ns: f64,
    /// Own consumes and no-ops over [`SLOW_NS`] that spanned a timer tick.
    slow_at_tick: u64,
    floor_slow_at_tick: u64,
    /// Own consumes and no-ops over [`SLOW_NS`] during which an interrupt was handled.
    slow_interrupted: u64,
    floor_slow_interrupted: u64,
    /// The slowest own consume and no-op during which none was (ns).
    quiet_max: u32,
    floor_quiet_max: u32,
    /// Consumes that were not preempted but took a page fault.
    faulted: Vec<u32>,
    /// Consumes that were not preempted but waited (a voluntary switch: I/O such as an fsync, or
    /// a lock): the store's own time, and the SQLite store's slowest.
    waited: Vec<u32>,
    /// Consumes not preempted but off their CPU (steal): their times.
    stolen: Vec<u32>,
    /// The process's resident memory after the untimed consumes (MB).
    filled_rss: f64,
    /// Own consumes over [`SLOW_NS`], with what they did (`--slowest`).
    slow: Vec<Slow>,
    /// Own consumes by how many expired entries they removed (`--slowest`).
    expired: [u64; EXPIRED_KINDS],
    /// The memory no-op's own times, and how many of them page-faulted (`--slowest`).
    touch_own: Vec<u32>,
    touch_faults: u64,
    /// Own consumes that did extra work (beyond removing expired entries): their times.
    extra: Vec<u32>,
    /// The memory no-op of one consume's lines, timed after every consume: its own times.
    touch_each: Vec<u32>,
}

/// Counts of expired entries a consume removed, the last one "that many or more".
const EXPIRED_KINDS: usize = 6;

/// An own consume over [`SLOW_NS`]: its wall and CPU time, its page faults, whether it spanned
/// a timer tick, the interrupts handled during it, and its shard before and after.
struct Slow {
    ns: u32,
    faults: i64,
    cpu_ns: i64,
    tick: bool,
    interrupts: u64,
    was: ShardProbe,
    now: ShardProbe,
}

impl Slow {
    /// Whether it did more than remove expired entries and record its own.
    fn extra(&self) -> bool {
        let (was, now) = (&self.was, &self.now);
        (!was.sized && now.sized)
            || now.table_capacity > was.table_capacity + 1
            || now.segments > was.segments
            || now.blocks > was.blocks
            || now.made_in_consume > was.made_in_consume
    }

    /// Expired entries it removed.
    fn expired(&self) -> usize {
        (self.was.entries + 1).saturating_sub(self.now.entries)
    }

    /// The store's own extra work in this consume, if any.
    fn work(&self) -> String {
        let (was, now) = (&self.was, &self.now);
        let mut w = Vec::new();
        if !was.sized && now.sized {
            w.push("table made".to_string());
        } else if now.table_capacity > was.table_capacity + 1 {
            w.push(format!("table rebuilt ({} -> {})", was.table_capacity, now.table_capacity));
        }
        if now.segments > was.segments {
            w.push("slab segment taken".into());
        }
        if now.blocks > was.blocks {
            w.push("queue block taken".into());
        }
        if now.made_in_consume > was.made_in_consume {
            w.push(format!("{} part(s) made in a consume", now.made_in_consume - was.made_in_consume));
        }
        let expired = self.expired();
        if expired > 0 {
            w.push(format!("{expired} expired removed"));
        }
        w.join(", ")
    }
}

/// The `n` slowest own consumes and what they did; and how many over [`SLOW_NS`] page-faulted,
/// spanned a tick or did extra work.
fn print_slowest(slow: &mut [Slow], n: usize, expired: &[u64; EXPIRED_KINDS]) {
    slow.sort_unstable_by_key(|s| std::cmp::Reverse(s.ns));
    let extra = Slow::extra;
    println!(
        "own consumes ≥ {} µs: {}; page-faulted {}, spanning a timer tick {}, interrupted {}, extra work \
         (beyond expiry) {}",
        SLOW_NS / 1000,
        slow.len(),
        slow.iter().filter(|s| s.faults > 0).count(),
        slow.iter().filter(|s| s.tick).count(),
        slow.iter().filter(|s| s.interrupts > 0).count(),
        slow.iter().filter(|s| extra(s)).count()
    );
    // Whether removing expired entries (cold lines of the table and slab) goes with slow ones.
    let mut by = [0u64; EXPIRED_KINDS];
    for s in slow.iter() {
        by[s.expired().min(EXPIRED_KINDS - 1)] += 1;
    }
    let total = expired.iter().sum::<u64>().max(1) as f64;
    let share = |v: &[u64]| {
        let sum = v.iter().sum::<u64>().max(1) as f64;
        v.iter().map(|c| format!("{:.1}%", *c as f64 * 100.0 / sum)).collect::<Vec<_>>().join(" ")
    };
    println!(
        "  expired entries removed 0..{}+: all own consumes {} ({total:.0}); own ≥ {} µs {}; the slowest {}: {}",
        EXPIRED_KINDS - 1,
        share(expired),
        SLOW_NS / 1000,
        share(&by),
        n.min(slow.len()),
        share(&slow.iter().take(n).fold([0u64; EXPIRED_KINDS], |mut a, s| {
            a[s.expired().min(EXPIRED_KINDS - 1)] += 1;
            a
        }))
    );
    // The slowest, and any other slow one that did extra work.
    for (i, s) in slow.iter().enumerate().filter(|(i, s)| *i < n || extra(s)) {
        println!(
            "{} {:>8.1} µs (CPU {:>7.1} µs) faults {:>2} tick {:<5} interrupts {:>2} shard {:>4}: {}",
            if i < n { " " } else { "+" },
            f64::from(s.ns) / 1000.0,
            s.cpu_ns as f64 / 1000.0,
            s.faults,
            s.tick,
            s.interrupts,
            s.now.shard,
            s.work()
        );
    }
}

/// The no-op: `n` rounds of a multiply-add chain on a register.
fn spin(n: u64) {
    let mut x = 1u64;
    for _ in 0..n {
        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
    }
}

/// Rounds of [`spin`] that take about `ns`: from the quickest of many short timings, which no
/// interrupt or preemption lengthened.
fn spin_rounds(ns: f64) -> u64 {
    let n = 1_000;
    let quickest = (0..1_000)
        .map(|_| {
            let t = Instant::now();
            spin(n);
            t.elapsed().as_nanos()
        })
        .min()
        .unwrap_or(1);
    (ns * n as f64 / quickest.max(1) as f64).round().max(1.0) as u64
}

/// What one timed call took: wall ns, whether the thread was preempted or off its CPU meanwhile
/// (not the code's time), and whether it page-faulted or waited.
enum Timed {
    Preempted(u32),
    Stolen(u32),
    Own { ns: u32, faults: i64, cpu_ns: i64, start: Instant, waited: bool, interrupts: u64 },
}

/// The kernel's timer tick: its period (the coarse clock's resolution, 1/HZ) and an instant at
/// which one happened (the coarse clock moved on), for telling whether a slow stretch of time
/// took in a tick. None where the coarse clock does not show one.
struct Tick {
    period: u128,
    edge: Instant,
}

fn coarse_ns(clock: libc::clockid_t, res: bool) -> u128 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_getres and clock_gettime write a timespec into the pointer they are given.
    let rc =
        unsafe { if res { libc::clock_getres(clock, &mut t) } else { libc::clock_gettime(clock, &mut t) } };
    assert_eq!(rc, 0, "clock");
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

fn tick() -> Option<Tick> {
    let period = coarse_ns(libc::CLOCK_MONOTONIC_COARSE, true);
    if !(100_000..=100_000_000).contains(&period) {
        return None;
    }
    let first = coarse_ns(libc::CLOCK_MONOTONIC_COARSE, false);
    let until = Instant::now() + std::time::Duration::from_nanos(3 * period as u64);
    loop {
        let now = Instant::now();
        if coarse_ns(libc::CLOCK_MONOTONIC_COARSE, false) != first {
            return Some(Tick { period, edge: now });
        }
        if now > until {
            return None;
        }
    }
}

impl Tick {
    /// Whether `ns` from `start` (give or take 20 µs) spans a tick.
    fn within(&self, start: Instant, ns: u32) -> bool {
        let from = start.saturating_duration_since(self.edge).as_nanos();
        let (a, b) = (from.saturating_sub(20_000), from + u128::from(ns) + 20_000);
        a / self.period != b / self.period
    }
}

fn timed(f: impl FnOnce()) -> Timed {
    let irqs = interrupts();
    let p0 = preemptions();
    let c0 = cpu_ns();
    // Read next to the timing, so that an interrupt just before or after is not counted in.
    let i0 = irqs.map_or(0, Interrupts::count);
    let t = Instant::now();
    f();
    let ns = t.elapsed().as_nanos().min(u32::MAX as u128) as u32;
    let interrupts = irqs.map_or(0, Interrupts::count) - i0;
    let c1 = cpu_ns();
    let p1 = preemptions();
    if p1.0 != p0.0 {
        return Timed::Preempted(ns);
    }
    // Off its CPU without blocking (which is the code's own wait) and without a switch.
    if p1.2 == p0.2 && i64::from(ns) - (c1 - c0) > STOLEN_NS {
        return Timed::Stolen(ns);
    }
    Timed::Own { ns, faults: p1.1 - p0.1, cpu_ns: c1 - c0, start: t, waited: p1.2 != p0.2, interrupts }
}

/// Consume `ops` fresh keys after `warm` untimed ones, `rate` per simulated second (and time
/// the no-op between them if `floor`).
fn run(
    store: &dyn NonceStore,
    memory: Option<&MemoryStore>,
    warm: u64,
    ops: u64,
    rate: u64,
    floor: bool,
) -> Run {
    let mut k = String::with_capacity(64);
    let at = |i: u64| T0 + i / rate;
    // The last 10,000 untimed consumes, each timed, give the mean consume the no-op is as long
    // as (leaving out their slowest 1 %: a preemption or an interrupt is not the mean).
    let mean_from = warm.saturating_sub(10_000);
    let mut last = Vec::with_capacity(10_000);
    for i in 0..warm {
        key(i, &mut k);
        let t = Instant::now();
        assert!(store.consume(&k, at(i) + TTL, at(i)).unwrap().is_fresh());
        if i >= mean_from {
            last.push(t.elapsed().as_nanos() as f64);
        }
    }
    last.sort_unstable_by(f64::total_cmp);
    last.truncate(last.len() - last.len() / 100);
    let floor_ns = last.iter().sum::<f64>() / last.len().max(1) as f64;
    let rounds = spin_rounds(floor_ns * FLOOR_EVERY as f64);
    // Every shard's state, to tell what each timed consume did to its own.
    let mut probe = memory.map(|m| (m, (0..m.shard_count()).map(|i| m.probe(i)).collect::<Vec<_>>()));
    let filled_rss = rss_mb();
    let mut touch = memory.map(|_| Touch::new(filled_rss));
    let tick = tick();
    let at_tick = |start, ns| ns >= SLOW_NS && tick.as_ref().is_some_and(|t| t.within(start, ns));
    let mut r = Run {
        all: Vec::with_capacity(ops as usize),
        own: Vec::with_capacity(ops as usize),
        floor_all: Vec::with_capacity((ops / FLOOR_EVERY + 1) as usize),
        floor_own: Vec::with_capacity((ops / FLOOR_EVERY + 1) as usize),
        floor_ns,
        slow_at_tick: 0,
        floor_slow_at_tick: 0,
        slow_interrupted: 0,
        floor_slow_interrupted: 0,
        quiet_max: 0,
        floor_quiet_max: 0,
        faulted: Vec::new(),
        waited: Vec::new(),
        stolen: Vec::new(),
        filled_rss,
        slow: Vec::new(),
        expired: [0; EXPIRED_KINDS],
        touch_own: Vec::new(),
        touch_faults: 0,
        extra: Vec::new(),
        touch_each: Vec::new(),
    };
    for i in warm..warm + ops {
        key(i, &mut k);
        let now = at(i);
        let mut fresh = false;
        let mut own = None;
        match timed(|| fresh = store.consume(&k, now + TTL, now).unwrap().is_fresh()) {
            Timed::Preempted(ns) => r.all.push(ns),
            Timed::Stolen(ns) => {
                r.all.push(ns);
                r.stolen.push(ns);
            }
            Timed::Own { ns, faults, cpu_ns, start, waited, interrupts } => {
                r.all.push(ns);
                r.own.push(ns);
                if interrupts == 0 {
                    r.quiet_max = r.quiet_max.max(ns);
                } else if ns >= SLOW_NS {
                    r.slow_interrupted += 1;
                }
                if faults > 0 {
                    r.faulted.push(ns);
                }
                if waited {
                    r.waited.push(ns);
                }
                let tick = at_tick(start, ns);
                r.slow_at_tick += u64::from(tick);
                own = Some((ns, faults, cpu_ns, tick, interrupts));
            }
        }
        assert!(fresh);
        if let Some((m, last)) = probe.as_mut() {
            // What the consume did to its shard, from the shard's state before and after.
            let now = m.probe(m.shard_of(&k));
            let was = std::mem::replace(&mut last[now.shard], now);
            if let Some((ns, faults, cpu_ns, tick, interrupts)) = own {
                let slow = Slow { ns, faults, cpu_ns, tick, interrupts, was, now };
                r.expired[slow.expired().min(EXPIRED_KINDS - 1)] += 1;
                if slow.extra() {
                    r.extra.push(ns);
                }
                if ns >= SLOW_NS {
                    r.slow.push(slow);
                }
            }
        }
        // A consume's worth of the memory no-op after every consume: as many timings, as long
        // and touching as many random lines as the consumes.
        if let Some(t) = touch.as_mut()
            && let Timed::Own { ns, .. } = timed(|| t.touch(TOUCHES))
        {
            r.touch_each.push(ns);
        }
        if !floor || i % FLOOR_EVERY != 0 {
            continue;
        }
        match timed(|| spin(rounds)) {
            Timed::Preempted(ns) | Timed::Stolen(ns) => r.floor_all.push(ns),
            Timed::Own { ns, start, interrupts, .. } => {
                r.floor_all.push(ns);
                r.floor_own.push(ns);
                if interrupts == 0 {
                    r.floor_quiet_max = r.floor_quiet_max.max(ns);
                } else if ns >= SLOW_NS {
                    r.floor_slow_interrupted += 1;
                }
                r.floor_slow_at_tick += u64::from(at_tick(start, ns));
            }
        }
        if let Some(t) = touch.as_mut()
            && let Timed::Own { ns, faults, .. } = timed(|| t.touch(FLOOR_EVERY as usize * TOUCHES))
        {
            r.touch_own.push(ns);
            r.touch_faults += u64::from(faults > 0);
        }
    }
    r
}

/// Random cache lines a consume writes or reads, about: its shard, table (control byte and
/// slot), slab slot and queue, and as many for each expired entry it removes.
const TOUCHES: usize = 10;

/// A buffer as large as the store, written long before: a no-op that writes random lines of it
/// touches memory as a consume does, without the store's code (`--slowest`).
struct Touch {
    buf: Vec<u64>,
    x: u64,
}

impl Touch {
    fn new(mb: f64) -> Self {
        let buf = vec![1u64; (mb * 131_072.0) as usize + 1];
        Self { buf, x: 0x9e37_79b9_7f4a_7c15 }
    }

    fn touch(&mut self, n: usize) {
        for _ in 0..n {
            // xorshift64
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let i = (self.x % self.buf.len() as u64) as usize;
            self.buf[i] = self.buf[i].wrapping_add(1);
        }
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize] as f64 / 1000.0
}

fn summary(v: &mut [u32]) -> [f64; 4] {
    v.sort_unstable();
    [pct(v, 0.5), pct(v, 0.99), pct(v, 0.999), pct(v, 1.0)]
}

fn main() {
    let o = opts();
    if o.rss {
        return rss_curve();
    }
    if let Some(n) = o.fresh {
        return fresh(n);
    }
    if o.interrupts {
        COUNT_INTERRUPTS.store(true, Ordering::Relaxed);
        if interrupts().is_none() {
            println!(
                "interrupts: not countable here (needs tracefs and perf_event_open on its tracepoints: \
                 root, or perf_event_paranoid <= 1)"
            );
        }
    }
    // `rows` live keys at TTL seconds each.
    let rate = (o.rows / TTL).max(1);
    let dir = std::env::temp_dir().join(format!("vlexivo-store-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?").to_string();
    println!(
        "store_latency: {} live keys ({rate}/s simulated, TTL {TTL} s), {} timed consumes each; load average {load}",
        o.rows, o.ops
    );
    println!(
        "{:<8} {:>9} {:>9} {:>10} {:>10}   {:>9} {:>10} {:>10}  preempted / stolen",
        "store", "p50 µs", "p99 µs", "p99.9 µs", "max µs", "own p99", "own p99.9", "own max"
    );
    let memory = (o.store == "all" || o.store == "memory")
        .then(|| MemoryStore::with_capacity((2 * o.rows as usize).max(1_000_000)));
    let mut stores: Vec<(&str, &dyn NonceStore)> = Vec::new();
    if let Some(m) = &memory {
        stores.push(("memory", m));
    }
    let sqlite =
        (o.store == "all" || o.store == "sqlite").then(|| SqliteStore::open(dir.join("nonces.db")).unwrap());
    if let Some(s) = &sqlite {
        stores.push(("sqlite", s));
    }
    for &(name, store) in &stores {
        let steal0 = steal_ms();
        // The floor next to the memory store's microseconds (a SQLite consume's tail is its
        // disk's, milliseconds).
        let memory = memory.as_ref().filter(|_| name == "memory" && o.slowest > 0);
        let mut r = run(store, memory, o.rows, o.ops, rate, name == "memory");
        let rss1 = rss_mb();
        let steal = steal_ms() - steal0;
        let stolen = r.stolen.len();
        let preempted = r.all.len() - r.own.len() - stolen;
        let slowest = |v: &[u32]| v.iter().max().map_or(0.0, |n| *n as f64 / 1000.0);
        let (faults, fault_max, stolen_max) = (r.faulted.len(), slowest(&r.faulted), slowest(&r.stolen));
        let (waits, wait_max) = (r.waited.len(), slowest(&r.waited));
        let waits_1ms = r.waited.iter().filter(|n| **n >= 1_000_000).count();
        let over = |v: &[u32]| v.iter().filter(|n| **n >= SLOW_NS).count();
        let (slow, floor_slow) = (over(&r.own), over(&r.floor_own));
        let a = summary(&mut r.all);
        let w = summary(&mut r.own);
        println!(
            "{name:<8} {:>9.1} {:>9.1} {:>10.1} {:>10.1}   {:>9.1} {:>10.1} {:>10.1}  {preempted} / {stolen}  \
             ({faults} own consumes took a page fault, the slowest {fault_max:.1} µs; {waits} waited \
             (I/O or a lock), {waits_1ms} of them ≥ 1 ms, the slowest {wait_max:.1} µs; the slowest \
             stolen {stolen_max:.1} µs; {steal} ms steal machine-wide during the run; process RSS \
             {:.0} MB filled, {rss1:.0} MB at the end)",
            a[0], a[1], a[2], a[3], w[1], w[2], w[3], r.filled_rss
        );
        let mut floor = String::new();
        if !r.floor_all.is_empty() {
            let (fa, fw) = (summary(&mut r.floor_all), summary(&mut r.floor_own));
            let ns = r.floor_ns * FLOOR_EVERY as f64;
            let (at_tick, floor_at_tick) = (r.slow_at_tick, r.floor_slow_at_tick);
            // Only where interrupts could be counted (see the module's doc).
            let quiet = interrupts().map(|_| {
                let (q, fq) = (f64::from(r.quiet_max) / 1000.0, f64::from(r.floor_quiet_max) / 1000.0);
                let (si, fsi) = (r.slow_interrupted, r.floor_slow_interrupted);
                (
                    format!(
                        "; interrupted while timed: {si} of the slow consumes, {fsi} of the slow no-ops; \
                         quiet (no interrupt handled) max: consumes {q:.1} µs, no-ops {fq:.1} µs"
                    ),
                    format!(
                        ",\"quiet_max\":{q:.2},\"floor_quiet_max\":{fq:.2},\"slow_interrupted\":{si},\
                         \"floor_slow_interrupted\":{fsi}"
                    ),
                )
            });
            let (quiet_text, quiet_json) = quiet.unwrap_or_default();
            println!(
                "{:<8} {:>9.1} {:>9.1} {:>10.1} {:>10.1}   {:>9.1} {:>10.1} {:>10.1}  (the machine's floor: a \
                 no-op of {ns:.0} ns timed after every {FLOOR_EVERY}th consume; own ≥ {} µs: {slow} consumes \
                 ({at_tick} spanning a timer tick), {floor_slow} no-ops ({floor_at_tick}){quiet_text})",
                "no-op",
                fa[0],
                fa[1],
                fa[2],
                fa[3],
                fw[1],
                fw[2],
                fw[3],
                SLOW_NS / 1000
            );
            floor = format!(
                ",\"floor_ns\":{ns:.0},\"floor_p999\":{:.2},\"floor_max\":{:.2},\"floor_own_p999\":{:.2},\
                 \"floor_own_max\":{:.2},\"slow\":{slow},\"slow_at_tick\":{at_tick},\"floor_slow\":{floor_slow},\
                 \"floor_slow_at_tick\":{floor_at_tick}{quiet_json}",
                fa[2], fa[3], fw[2], fw[3]
            );
        }
        println!(
            "BENCH {{\"bench\":\"store_latency\",\"store\":\"{name}\",\"rows\":{},\"ops\":{},\"p50\":{:.2},\"p99\":{:.2},\"p999\":{:.2},\"max\":{:.2},\"own_p50\":{:.2},\"own_p99\":{:.2},\"own_p999\":{:.2},\"own_max\":{:.2},\"preempted\":{preempted},\"stolen\":{stolen},\"stolen_max\":{stolen_max:.2},\"steal_ms\":{steal},\"faulted\":{faults},\"faulted_max\":{fault_max:.2},\"waited\":{waits},\"waited_1ms\":{waits_1ms},\"waited_max\":{wait_max:.2},\"rss_filled_mb\":{:.1},\"rss_end_mb\":{rss1:.1}{floor},\"load\":\"{load}\"}}",
            o.rows, o.ops, a[0], a[1], a[2], a[3], w[0], w[1], w[2], w[3], r.filled_rss,
        );
        if memory.is_some() {
            let slow = over(&r.touch_own);
            let t = summary(&mut r.touch_own);
            println!(
                "touch: {FLOOR_EVERY} consumes' worth of random line writes ({}) over a buffer as large as the \
                 process, after every {FLOOR_EVERY}th consume: own p50 {:.1} p99.9 {:.1} max {:.1} µs; own ≥ {} µs: {slow}; \
                 page-faulted {}",
                FLOOR_EVERY as usize * TOUCHES,
                t[0],
                t[2],
                t[3],
                SLOW_NS / 1000,
                r.touch_faults
            );
            let slow = over(&r.touch_each);
            let t = summary(&mut r.touch_each);
            println!(
                "touch: one consume's worth ({TOUCHES}) after every consume: own p50 {:.1} p99.9 {:.1} max {:.1} µs; \
                 own ≥ {} µs: {slow}",
                t[0],
                t[2],
                t[3],
                SLOW_NS / 1000
            );
            let e = summary(&mut r.extra);
            println!(
                "own consumes that did extra work: {}, p50 {:.1} max {:.1} µs",
                r.extra.len(),
                e[0],
                e[3]
            );
            print_slowest(&mut r.slow, o.slowest, &r.expired);
        }
    }
    drop(stores);
    drop(sqlite);
    let _ = std::fs::remove_dir_all(&dir);
}
