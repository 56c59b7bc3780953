//! The payer's spending policy: caps per call, per host, in total and per rolling time window,
//! enforced by a [`Budget`] that is safe to share between concurrent requests.
//!
//! Paying is two-phase: [`Budget::reserve`] before signing a payment (outstanding reservations
//! count as spent, so N concurrent calls can never overshoot a cap together), then
//! [`Budget::commit`] once the facilitator has charged, or [`Budget::release`] if it did not.
//! A [`Reservation`] dropped without either is released, so an early return cannot leak budget.
//!
//! Amounts are tracked internally in atomic units of the settlement asset (exact integers), so
//! sums never round and lifetime totals are not bounded by the per-amount maximum.

use crate::error::{BudgetLimit, Error, Result};
use crate::money::{Currency, MAX_AMOUNT, Money};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// Limits on what a payer spends. `None` means no limit of that kind. All amounts must be in one
/// currency, the one the budget pays in.
#[derive(Clone, Debug, Default)]
pub struct SpendingPolicy {
    /// The most one call may cost.
    pub max_per_call: Option<Money>,
    /// The most this budget spends over its lifetime.
    pub max_total: Option<Money>,
    /// The most spent on any one host (compared case-insensitively).
    pub max_per_host: Option<Money>,
    /// `(seconds, max)`: the most spent within any rolling window of that many seconds.
    pub window: Option<(u64, Money)>,
}

impl SpendingPolicy {
    /// The currency the limits are in (the first limit set), if any limit is set.
    fn currency(&self) -> Option<Currency> {
        [self.max_per_call, self.max_total, self.max_per_host, self.window.map(|w| w.1)]
            .into_iter()
            .flatten()
            .map(|m| m.currency())
            .next()
    }
}

/// A budget enforcing a [`SpendingPolicy`]. Cheap to clone; clones share one budget.
#[derive(Clone, Debug)]
pub struct Budget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    policy: SpendingPolicy,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Fixed by the policy's limits, else by the first reservation.
    currency: Option<Currency>,
    spent_total: u128,
    spent_host: HashMap<String, u128>,
    /// Committed spends as (reservation time, units), sorted by time; only those still inside
    /// the window are kept. `window_sum` is their total.
    window: VecDeque<(u64, u128)>,
    window_sum: u128,
    reserved_total: u128,
    reserved_host: HashMap<String, u128>,
    next_id: u64,
}

impl Budget {
    pub fn new(policy: SpendingPolicy) -> Self {
        let state = State { currency: policy.currency(), ..State::default() };
        Self { inner: Arc::new(Inner { policy, state: Mutex::new(state) }) }
    }

    /// Reserve before paying: checks per-call, then total, per-host, window, counting
    /// outstanding reservations as spent. `Err(BudgetExceeded{limit, requested, remaining})`
    /// names the first limit hit; an amount in another currency is `CurrencyMismatch`.
    pub fn reserve(&self, host: &str, amount: &Money, now: u64) -> Result<Reservation> {
        let policy = &self.inner.policy;
        let host = normalize_host(host);
        let mut st = self.inner.state.lock();
        let currency = amount.currency();
        if let Some(expected) = st.currency
            && expected != currency
        {
            return Err(Error::CurrencyMismatch {
                expected: expected.code().into(),
                got: currency.code().into(),
            });
        }
        let requested = u128::from(amount.to_atomic());
        let exceeded = |limit, remaining: u128| Error::BudgetExceeded {
            limit,
            requested: amount.to_string(),
            remaining: money(remaining, currency).to_string(),
        };
        // Each check: would `used + requested` go over the limit?
        let check = |limit, max: &Money, used: u128| -> Result<()> {
            let max = units_of(max, amount)?;
            if used.saturating_add(requested) > max {
                return Err(exceeded(limit, max.saturating_sub(used)));
            }
            Ok(())
        };

        if let Some(max) = &policy.max_per_call {
            check(BudgetLimit::PerCall, max, 0)?;
        }
        if let Some(max) = &policy.max_total {
            check(BudgetLimit::Total, max, st.spent_total + st.reserved_total)?;
        }
        if let Some(max) = &policy.max_per_host {
            let used = st.spent_host.get(&host).copied().unwrap_or(0)
                + st.reserved_host.get(&host).copied().unwrap_or(0);
            check(BudgetLimit::PerHost, max, used)?;
        }
        if let Some((secs, max)) = &policy.window {
            st.prune_window(*secs, now);
            // Outstanding reservations are about to be spent now: they count in any window.
            check(BudgetLimit::Window, max, st.window_sum + st.reserved_total)?;
        }

        st.currency = Some(currency);
        st.reserved_total += requested;
        *st.reserved_host.entry(host.clone()).or_default() += requested;
        let id = st.next_id;
        st.next_id += 1;
        Ok(Reservation { id, host, amount: *amount, at: now, budget: Some(Arc::clone(&self.inner)) })
    }

    /// Payment succeeded: the reservation becomes spend.
    pub fn commit(&self, r: Reservation) {
        debug_assert!(r.belongs_to(self), "reservation from another budget");
        r.commit();
    }

    /// Payment failed: the reservation is freed.
    pub fn release(&self, r: Reservation) {
        debug_assert!(r.belongs_to(self), "reservation from another budget");
        r.release();
    }

    /// Committed spend over the budget's lifetime (reservations not included).
    pub fn spent_total(&self) -> Money {
        let st = self.inner.state.lock();
        money(st.spent_total, st.currency_or_default())
    }

    /// Committed spend on `host` (case-insensitive).
    pub fn spent_for_host(&self, host: &str) -> Money {
        let st = self.inner.state.lock();
        let units = st.spent_host.get(&normalize_host(host)).copied().unwrap_or(0);
        money(units, st.currency_or_default())
    }

    /// Reserved and neither committed nor released yet.
    pub fn reserved_total(&self) -> Money {
        let st = self.inner.state.lock();
        money(st.reserved_total, st.currency_or_default())
    }

    pub fn policy(&self) -> &SpendingPolicy {
        &self.inner.policy
    }

    /// The most that could still be spent on `host` at `now` by the cumulative limits (total,
    /// per host, window), counting outstanding reservations as spent; `None` when none is set.
    /// The per-call cap is not cumulative and is not included.
    pub fn headroom(&self, host: &str, now: u64) -> Option<Money> {
        let policy = &self.inner.policy;
        let host = normalize_host(host);
        let mut st = self.inner.state.lock();
        let currency = st.currency_or_default();
        let left = |max: &Money, used: u128| u128::from(max.to_atomic()).saturating_sub(used);
        let mut least: Option<u128> = None;
        let mut take = |v: u128| least = Some(least.map_or(v, |l| l.min(v)));
        if let Some(max) = &policy.max_total {
            take(left(max, st.spent_total + st.reserved_total));
        }
        if let Some(max) = &policy.max_per_host {
            let used = st.spent_host.get(&host).copied().unwrap_or(0)
                + st.reserved_host.get(&host).copied().unwrap_or(0);
            take(left(max, used));
        }
        if let Some((secs, max)) = &policy.window {
            st.prune_window(*secs, now);
            let used = st.window_sum + st.reserved_total;
            take(left(max, used));
        }
        least.map(|units| money(units, currency))
    }
}

impl State {
    fn currency_or_default(&self) -> Currency {
        self.currency.unwrap_or(Currency::Usd)
    }

    /// Drop committed spends that have left the window ending at `now`: a spend at `t` counts
    /// while `now < t + secs`.
    fn prune_window(&mut self, secs: u64, now: u64) {
        while let Some(&(t, units)) = self.window.front() {
            if t.saturating_add(secs) > now {
                break;
            }
            self.window.pop_front();
            self.window_sum -= units;
        }
    }

    fn unreserve(&mut self, host: &str, units: u128) {
        self.reserved_total -= units;
        if let Some(h) = self.reserved_host.get_mut(host) {
            *h -= units;
            if *h == 0 {
                self.reserved_host.remove(host);
            }
        }
    }
}

/// Budget held for one payment. Must be given back: [`Budget::commit`] or [`Budget::release`]
/// (or the methods of the same names here). Dropping it without either releases it.
#[must_use = "commit the reservation when the payment succeeds, release it otherwise"]
#[derive(Debug)]
pub struct Reservation {
    id: u64,
    host: String,
    amount: Money,
    at: u64,
    /// `None` once committed or released, so `Drop` does nothing more.
    budget: Option<Arc<Inner>>,
}

impl Reservation {
    /// Unique within its budget (for logs).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The host, lowercased.
    pub fn host(&self) -> &str {
        &self.host
    }
    pub fn amount(&self) -> Money {
        self.amount
    }
    /// The `now` it was reserved at; a committed spend counts in the window from this time.
    pub fn at(&self) -> u64 {
        self.at
    }

    /// Payment succeeded: becomes spend.
    pub fn commit(mut self) {
        let Some(inner) = self.budget.take() else { return };
        let units = u128::from(self.amount.to_atomic());
        let mut st = inner.state.lock();
        st.unreserve(&self.host, units);
        st.spent_total += units;
        *st.spent_host.entry(std::mem::take(&mut self.host)).or_default() += units;
        if inner.policy.window.is_some() && units > 0 {
            // Usually the newest; keep the list sorted when callers' clocks interleave.
            let pos = st.window.partition_point(|&(t, _)| t <= self.at);
            st.window.insert(pos, (self.at, units));
            st.window_sum += units;
        }
    }

    /// Payment failed: frees the reservation.
    pub fn release(mut self) {
        self.release_inner();
    }

    fn release_inner(&mut self) {
        if let Some(inner) = self.budget.take() {
            inner.state.lock().unreserve(&self.host, u128::from(self.amount.to_atomic()));
        }
    }

    fn belongs_to(&self, budget: &Budget) -> bool {
        self.budget.as_ref().is_none_or(|b| Arc::ptr_eq(b, &budget.inner))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release_inner();
    }
}

fn normalize_host(host: &str) -> String {
    host.to_ascii_lowercase()
}

/// A limit in atomic units, refusing a limit in another currency than the amount.
fn units_of(limit: &Money, amount: &Money) -> Result<u128> {
    if limit.currency() != amount.currency() {
        return Err(Error::CurrencyMismatch {
            expected: limit.currency().code().into(),
            got: amount.currency().code().into(),
        });
    }
    Ok(u128::from(limit.to_atomic()))
}

/// Units back to money; totals beyond the largest representable amount saturate there.
fn money(units: u128, currency: Currency) -> Money {
    let max = Money::new(MAX_AMOUNT, currency).expect("MAX_AMOUNT is valid").to_atomic();
    let units = u64::try_from(units).unwrap_or(u64::MAX).min(max);
    Money::from_atomic(units, currency).expect("within MAX_AMOUNT")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    fn usd(s: &str) -> Money {
        Money::parse(s, Currency::Usd).unwrap()
    }

    fn refused(r: Result<Reservation>) -> (BudgetLimit, String, String) {
        match r {
            Err(Error::BudgetExceeded { limit, requested, remaining }) => (limit, requested, remaining),
            other => panic!("expected budget_exceeded, got {other:?}"),
        }
    }

    #[test]
    fn per_call_limit() {
        let b = Budget::new(SpendingPolicy { max_per_call: Some(usd("0.01")), ..Default::default() });
        b.reserve("a.com", &usd("0.01"), 0).unwrap().commit();
        let (limit, requested, remaining) = refused(b.reserve("a.com", &usd("0.011"), 0));
        assert_eq!((limit, requested.as_str(), remaining.as_str()), (BudgetLimit::PerCall, "0.011", "0.01"));
        let err = b.reserve("a.com", &usd("1"), 0).unwrap_err();
        assert_eq!((err.code(), err.http_status()), ("budget_exceeded", 402));
        assert_eq!(b.spent_total(), usd("0.01"));
    }

    #[test]
    fn total_limit_counts_reservations() {
        let b = Budget::new(SpendingPolicy { max_total: Some(usd("0.05")), ..Default::default() });
        b.reserve("a.com", &usd("0.02"), 0).unwrap().commit();
        let held = b.reserve("b.com", &usd("0.02"), 0).unwrap();
        let (limit, _, remaining) = refused(b.reserve("c.com", &usd("0.02"), 0));
        assert_eq!((limit, remaining.as_str()), (BudgetLimit::Total, "0.01"));
        b.reserve("c.com", &usd("0.01"), 0).unwrap().commit();
        assert_eq!(b.reserved_total(), usd("0.02"));
        b.commit(held);
        assert_eq!(b.spent_total(), usd("0.05"));
        assert_eq!(b.reserved_total(), usd("0"));
        let (_, _, remaining) = refused(b.reserve("a.com", &usd("0.000001"), 0));
        assert_eq!(remaining, "0");
        // A zero amount never exceeds anything.
        b.reserve("a.com", &usd("0"), 0).unwrap().commit();
    }

    #[test]
    fn per_host_limit_is_per_host_and_case_insensitive() {
        let b = Budget::new(SpendingPolicy { max_per_host: Some(usd("0.03")), ..Default::default() });
        b.reserve("api.a.com", &usd("0.02"), 0).unwrap().commit();
        let (limit, _, remaining) = refused(b.reserve("API.A.com", &usd("0.02"), 0));
        assert_eq!((limit, remaining.as_str()), (BudgetLimit::PerHost, "0.01"));
        b.reserve("api.b.com", &usd("0.03"), 0).unwrap().commit();
        assert_eq!(b.spent_for_host("Api.A.Com"), usd("0.02"));
        assert_eq!(b.spent_for_host("api.b.com"), usd("0.03"));
        assert_eq!(b.spent_for_host("nowhere"), usd("0"));
        assert_eq!(b.spent_total(), usd("0.05"));
    }

    #[test]
    fn window_rolls() {
        let b = Budget::new(SpendingPolicy { window: Some((60, usd("0.05"))), ..Default::default() });
        b.reserve("a.com", &usd("0.03"), 1000).unwrap().commit();
        b.reserve("a.com", &usd("0.02"), 1030).unwrap().commit();
        let (limit, _, remaining) = refused(b.reserve("a.com", &usd("0.01"), 1059));
        assert_eq!((limit, remaining.as_str()), (BudgetLimit::Window, "0"));
        // At 1060 the spend at 1000 has left the window; the one at 1030 has not.
        b.reserve("a.com", &usd("0.03"), 1060).unwrap().commit();
        refused(b.reserve("a.com", &usd("0.01"), 1089));
        // At 1090 only the spend at 1060 (0.03) is left.
        let (_, _, remaining) = refused(b.reserve("a.com", &usd("0.03"), 1090));
        assert_eq!(remaining, "0.02");
        b.reserve("a.com", &usd("0.02"), 1090).unwrap().commit();
        // Long after, everything has rolled out; the total is unaffected.
        b.reserve("a.com", &usd("0.05"), 5000).unwrap().commit();
        assert_eq!(b.spent_total(), usd("0.15"));
    }

    #[test]
    fn window_counts_outstanding_reservations() {
        let b = Budget::new(SpendingPolicy { window: Some((60, usd("0.05"))), ..Default::default() });
        let held = b.reserve("a.com", &usd("0.04"), 0).unwrap();
        refused(b.reserve("a.com", &usd("0.02"), 1000));
        drop(held);
        b.reserve("a.com", &usd("0.05"), 1000).unwrap().commit();
    }

    #[test]
    fn limits_are_checked_in_order() {
        let b = Budget::new(SpendingPolicy {
            max_per_call: Some(usd("0.10")),
            max_total: Some(usd("1")),
            max_per_host: Some(usd("0.15")),
            window: Some((3600, usd("0.12"))),
        });
        assert_eq!(refused(b.reserve("a.com", &usd("2"), 0)).0, BudgetLimit::PerCall);
        b.reserve("a.com", &usd("0.10"), 0).unwrap().commit();
        // Over both per-host and window: per-host is named first.
        assert_eq!(refused(b.reserve("a.com", &usd("0.06"), 0)).0, BudgetLimit::PerHost);
        assert_eq!(refused(b.reserve("b.com", &usd("0.06"), 0)).0, BudgetLimit::Window);
        b.reserve("b.com", &usd("0.02"), 0).unwrap().commit();
    }

    #[test]
    fn release_and_drop_return_budget() {
        let b = Budget::new(SpendingPolicy { max_total: Some(usd("0.01")), ..Default::default() });
        let r = b.reserve("a.com", &usd("0.01"), 0).unwrap();
        assert_eq!((r.host(), r.amount(), r.at()), ("a.com", usd("0.01"), 0));
        refused(b.reserve("a.com", &usd("0.01"), 0));
        b.release(r);
        let r = b.reserve("a.com", &usd("0.01"), 0).unwrap();
        refused(b.reserve("a.com", &usd("0.01"), 0));
        drop(r);
        // An early return (`?`) drops the reservation: released too.
        let fails = || -> Result<()> {
            let _r = b.reserve("a.com", &usd("0.01"), 0)?;
            Err(Error::FacilitatorUnavailable("down".into()))
        };
        assert!(fails().is_err());
        assert_eq!(b.reserved_total(), usd("0"));
        b.reserve("a.com", &usd("0.01"), 0).unwrap().commit();
        assert_eq!(b.spent_total(), usd("0.01"));
        refused(b.reserve("a.com", &usd("0.01"), 0));
    }

    #[test]
    fn headroom_is_the_tightest_cumulative_limit() {
        let b = Budget::new(SpendingPolicy {
            max_per_call: Some(usd("0.001")),
            max_total: Some(usd("1")),
            max_per_host: Some(usd("0.5")),
            window: Some((60, usd("0.3"))),
        });
        assert_eq!(b.headroom("a.com", 0), Some(usd("0.3")));
        let held = b.reserve("a.com", &usd("0.001"), 0).unwrap();
        assert_eq!(b.headroom("a.com", 0), Some(usd("0.299")));
        held.commit();
        // The window rolls back to its full 0.3.
        assert_eq!(b.headroom("A.com", 100), Some(usd("0.3")));
        let b = Budget::new(SpendingPolicy {
            max_per_host: Some(usd("0.5")),
            window: Some((60, usd("0.3"))),
            ..Default::default()
        });
        b.reserve("a.com", &usd("0.3"), 0).unwrap().commit();
        // Once the window has rolled, per host is the tighter limit on a.com only.
        assert_eq!(b.headroom("a.com", 100), Some(usd("0.2")));
        assert_eq!(b.headroom("b.com", 100), Some(usd("0.3")));
        assert_eq!(Budget::new(SpendingPolicy::default()).headroom("a.com", 0), None);
        let only_per_call = SpendingPolicy { max_per_call: Some(usd("1")), ..Default::default() };
        assert_eq!(Budget::new(only_per_call).headroom("a.com", 0), None);
    }

    #[test]
    fn ids_are_unique() {
        let b = Budget::new(SpendingPolicy::default());
        let r1 = b.reserve("a", &usd("1"), 0).unwrap();
        let r2 = b.reserve("a", &usd("1"), 0).unwrap();
        assert_ne!(r1.id(), r2.id());
    }

    #[test]
    fn no_limits_allows_everything() {
        let b = Budget::new(SpendingPolicy::default());
        for _ in 0..3 {
            b.reserve("a.com", &usd("1000000"), 0).unwrap().commit();
        }
        // Lifetime totals beyond the largest single amount saturate in the getter only.
        assert_eq!(b.spent_total().amount(), MAX_AMOUNT);
        assert!(b.policy().max_total.is_none());
    }

    #[test]
    fn concurrent_reserves_never_exceed_total() {
        let b = Budget::new(SpendingPolicy { max_total: Some(usd("0.5")), ..Default::default() });
        let barrier = Barrier::new(100);
        let ok = std::thread::scope(|s| {
            let handles: Vec<_> = (0..100)
                .map(|i| {
                    let (b, barrier) = (&b, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        match b.reserve(&format!("h{}.com", i % 7), &usd("0.01"), 0) {
                            Ok(r) => {
                                b.commit(r);
                                true
                            }
                            Err(e) => {
                                assert_eq!(e.code(), "budget_exceeded");
                                false
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).filter(|&x| x).count()
        });
        assert_eq!(ok, 50);
        assert_eq!(b.spent_total(), usd("0.5"));
        assert_eq!(b.reserved_total(), usd("0"));
    }

    #[test]
    fn concurrent_reserve_release_leaves_no_residue() {
        let b = Budget::new(SpendingPolicy {
            max_total: Some(usd("0.05")),
            max_per_host: Some(usd("0.03")),
            window: Some((10, usd("0.04"))),
            ..Default::default()
        });
        std::thread::scope(|s| {
            for t in 0..8 {
                let b = &b;
                s.spawn(move || {
                    for i in 0..500 {
                        if let Ok(r) = b.reserve(&format!("h{}", (t + i) % 3), &usd("0.01"), 0) {
                            if i % 2 == 0 { b.release(r) } else { drop(r) }
                        }
                    }
                });
            }
        });
        assert_eq!(b.reserved_total(), usd("0"));
        assert_eq!(b.spent_total(), usd("0"));
        b.reserve("h0", &usd("0.03"), 0).unwrap().commit();
    }
}
