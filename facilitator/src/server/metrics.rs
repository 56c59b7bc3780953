//! The service's metrics, exposed at `GET /metrics` in the OpenMetrics text format by
//! `prometheus-client`: payment and top-up counters, errors by code, and one latency histogram
//! per route template.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbLabels {
    event: &'static str,
}

/// Failures of the ledger's database (PostgreSQL), by what happened: `connection_lost`,
/// `conflict` (a batch run again), `gave_up` (writes refused with 503 `facilitator_unavailable`
/// after the retry window), `fatal` (a batch rolled back). A handle the ledger writer keeps.
#[derive(Clone, Debug, Default)]
pub struct DbErrors(Family<DbLabels, Counter>);

impl DbErrors {
    pub fn inc(&self, event: &'static str) {
        self.0.get_or_create(&DbLabels { event }).inc();
    }
}

/// Upper bounds (seconds) of the ledger's own timings: a commit's fsync is 0.1 ms on a quiet
/// disk, so finer than the HTTP buckets.
const LEDGER_BUCKETS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.5];

/// The SQLite ledger writer's timings, a handle it keeps: each batch from its first op taken to
/// its answers (`batch`), the COMMIT within it (the durable write: the WAL's fsync), and each
/// passive checkpoint on the checkpointer's own connection. Where a slow payment spent its time.
/// `handed_off` counts the batches queued during a commit by a submitting task and passed on to
/// a blocking-pool thread (the others were committed by their first op's own task).
#[derive(Clone, Debug)]
pub struct LedgerTimes {
    pub batch: Histogram,
    pub commit: Histogram,
    pub checkpoint: Histogram,
    pub handed_off: Counter,
}

impl Default for LedgerTimes {
    fn default() -> Self {
        let h = || Histogram::new(LEDGER_BUCKETS);
        Self { batch: h(), commit: h(), checkpoint: h(), handed_off: Counter::default() }
    }
}

/// `route` is the matched route template (bounded cardinality), never the raw path.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

pub struct Metrics {
    pub payments: Counter,
    pub payments_replayed: Counter,
    pub amount_paid_atomic: Counter,
    pub topups: Counter,
    pub amount_topped_up_atomic: Counter,
    pub providers_created: Counter,
    pub db_errors: DbErrors,
    pub ledger_times: LedgerTimes,
    errors: Family<ErrorLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Requests being served and the most served at once (set when the metrics are read).
    requests_in_flight: Gauge,
    max_in_flight: Gauge,
    registry: Registry,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let (payments, payments_replayed, amount_paid_atomic) = Default::default();
        let (topups, amount_topped_up_atomic, providers_created) = Default::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let latency = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        // The registry keeps handles to the same atomics the service increments.
        let mut registry = Registry::with_prefix("vlexivo");
        let counters: [(&str, &str, &Counter); 6] = [
            ("payments", "Payments settled (replays excluded)", &payments),
            ("payments_replayed", "Payment requests answered with an earlier receipt", &payments_replayed),
            ("amount_paid_atomic", "Sum of settled payments in atomic units (1e-6 usd)", &amount_paid_atomic),
            ("topups", "Sandbox faucet top-ups", &topups),
            ("amount_topped_up_atomic", "Sum of faucet top-ups in atomic units", &amount_topped_up_atomic),
            ("providers_created", "Providers onboarded", &providers_created),
        ];
        for (name, help, c) in counters {
            registry.register(name, help, c.clone());
        }
        registry.register("errors", "Error responses by code", errors.clone());
        let db_errors = DbErrors::default();
        registry.register(
            "ledger_db_errors",
            "Ledger database failures by event (PostgreSQL)",
            db_errors.0.clone(),
        );
        let ledger_times = LedgerTimes::default();
        registry.register(
            "ledger_batch_duration_seconds",
            "Ledger writer batches, first op taken to answers sent (SQLite)",
            ledger_times.batch.clone(),
        );
        registry.register(
            "ledger_commit_duration_seconds",
            "Ledger COMMITs, the durable write (SQLite)",
            ledger_times.commit.clone(),
        );
        registry.register(
            "ledger_checkpoint_duration_seconds",
            "Ledger WAL checkpoints on the checkpointer's connection (SQLite)",
            ledger_times.checkpoint.clone(),
        );
        registry.register(
            "ledger_handoffs",
            "Ledger batches queued during a commit and passed to a blocking-pool thread (SQLite)",
            ledger_times.handed_off.clone(),
        );
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        let (requests_in_flight, max_in_flight) = (Gauge::default(), Gauge::default());
        registry.register(
            "requests_in_flight",
            "Requests being served (/healthz, /readyz and /metrics not counted)",
            requests_in_flight.clone(),
        );
        registry.register(
            "max_in_flight",
            "Most requests served at once (0: no limit); more are refused with 503 facilitator_overloaded",
            max_in_flight.clone(),
        );
        Self {
            payments,
            payments_replayed,
            amount_paid_atomic,
            topups,
            amount_topped_up_atomic,
            providers_created,
            db_errors,
            ledger_times,
            errors,
            latency,
            requests_in_flight,
            max_in_flight,
            registry,
        }
    }
}

impl Metrics {
    pub fn error(&self, code: &'static str) {
        self.errors.get_or_create(&ErrorLabels { code }).inc();
    }

    /// `route` is the matched route template (bounded cardinality), never the raw path.
    pub fn observe(&self, route: &str, method: &'static str, secs: f64) {
        self.latency.get_or_create(&RouteLabels { route: route.to_string(), method }).observe(secs);
    }

    /// The requests in flight now and the limit on them.
    pub fn in_flight(&self, now: usize, max: usize) {
        self.requests_in_flight.set(i64::try_from(now).unwrap_or(i64::MAX));
        self.max_in_flight.set(i64::try_from(max).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openmetrics_with_labels_escaped() {
        let m = Metrics::default();
        m.payments.inc_by(2);
        m.amount_paid_atomic.inc_by(251_000);
        m.error("payment_conflict");
        m.db_errors.inc("connection_lost");
        m.observe("/v1/payments", "POST", 0.002);
        m.observe("/odd\"route", "GET", 20.0);
        m.ledger_times.commit.observe(0.0003);
        let text = m.render();
        for line in [
            "# TYPE vlexivo_payments counter",
            "vlexivo_payments_total 2",
            "vlexivo_amount_paid_atomic_total 251000",
            "vlexivo_errors_total{code=\"payment_conflict\"} 1",
            "vlexivo_ledger_db_errors_total{event=\"connection_lost\"} 1",
            "vlexivo_http_request_duration_seconds_bucket{le=\"0.0025\",route=\"/v1/payments\",method=\"POST\"} 1",
            "vlexivo_http_request_duration_seconds_bucket{le=\"0.001\",route=\"/v1/payments\",method=\"POST\"} 0",
            "vlexivo_http_request_duration_seconds_count{route=\"/v1/payments\",method=\"POST\"} 1",
            "vlexivo_ledger_commit_duration_seconds_bucket{le=\"0.00025\"} 0",
            "vlexivo_ledger_commit_duration_seconds_bucket{le=\"0.0005\"} 1",
            "vlexivo_ledger_checkpoint_duration_seconds_count 0",
            "vlexivo_ledger_handoffs_total 0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
        }
        assert!(text.contains(r#"route="/odd\"route""#), "{text}");
    }
}
