//! Prometheus text exposition, hand-rolled: a few counters and one latency histogram per route.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub struct Metrics {
    pub payments: AtomicU64,
    pub payments_replayed: AtomicU64,
    pub amount_paid_atomic: AtomicU64,
    pub topups: AtomicU64,
    pub amount_topped_up_atomic: AtomicU64,
    pub providers_created: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    latency: Mutex<BTreeMap<(String, &'static str), Histogram>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn error(&self, code: &'static str) {
        *self.errors.lock().entry(code).or_default() += 1;
    }

    /// `route` is the matched route template (bounded cardinality), never the raw path.
    pub fn observe(&self, route: &str, method: &'static str, secs: f64) {
        let mut map = self.latency.lock();
        let h = match map.get_mut(&(route.to_string(), method)) {
            Some(h) => h,
            None => map.entry((route.to_string(), method)).or_default(),
        };
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let c = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        c(
            &mut o,
            "vlexivo_payments_total",
            "Payments settled (replays excluded).",
            self.payments.load(Ordering::Relaxed),
        );
        c(
            &mut o,
            "vlexivo_payments_replayed_total",
            "Payment requests answered with an earlier receipt.",
            self.payments_replayed.load(Ordering::Relaxed),
        );
        c(
            &mut o,
            "vlexivo_amount_paid_atomic_total",
            "Sum of settled payments in atomic units (1e-6 usd).",
            self.amount_paid_atomic.load(Ordering::Relaxed),
        );
        c(&mut o, "vlexivo_topups_total", "Sandbox faucet top-ups.", self.topups.load(Ordering::Relaxed));
        c(
            &mut o,
            "vlexivo_amount_topped_up_atomic_total",
            "Sum of faucet top-ups in atomic units.",
            self.amount_topped_up_atomic.load(Ordering::Relaxed),
        );
        c(
            &mut o,
            "vlexivo_providers_created_total",
            "Providers onboarded.",
            self.providers_created.load(Ordering::Relaxed),
        );

        let _ = writeln!(
            o,
            "# HELP vlexivo_errors_total Error responses by code.\n# TYPE vlexivo_errors_total counter"
        );
        for (code, n) in self.errors.lock().iter() {
            let _ = writeln!(o, "vlexivo_errors_total{{code=\"{code}\"}} {n}");
        }

        let name = "vlexivo_http_request_duration_seconds";
        let _ = writeln!(o, "# HELP {name} HTTP request latency by route.\n# TYPE {name} histogram");
        for ((route, method), h) in self.latency.lock().iter() {
            let route = route.replace('\\', "\\\\").replace('"', "\\\"");
            let labels = format!("route=\"{route}\",method=\"{method}\"");
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(o, "{name}_bucket{{{labels},le=\"{le}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(o, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(o, "{name}_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(o, "{name}_count{{{labels}}} {}", h.count);
        }
        o
    }
}
