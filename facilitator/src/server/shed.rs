//! Load shedding: the service serves at most `max_in_flight` requests at once (tower's
//! concurrency limit, one semaphore for every route) and answers any request past that at once,
//! before reading it, with 503 `facilitator_overloaded` and `Retry-After`, rather than queueing
//! it without bound. Such a request was not looked at, so nothing was charged for it (the payer
//! side knows: core's client takes the answer as a clear refusal). `/healthz`, `/readyz` and
//! `/metrics` are never refused: a supervisor must see an overloaded service as alive, and an
//! operator must see why it refuses. The refusals are counted as errors by code
//! (`vlexivo_errors_total{code="facilitator_overloaded"}`) next to the requests in flight.

use super::api::ApiError;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::load_shed::error::Overloaded;
use vlexivo_core::Error;

/// Requests served at once per CPU by default: several times what the ledger's group commit
/// takes in one batch, so a busy service never refuses work it would finish promptly.
pub const PER_CPU: usize = 256;

/// Seconds a refused caller is told to wait (`Retry-After`).
const RETRY_AFTER_SECS: &str = "1";

/// The default limit: [`PER_CPU`] per CPU this process may run on.
pub fn default_max_in_flight() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * PER_CPU
}

/// The limit and what counts against it.
#[derive(Debug)]
pub(crate) struct Limit {
    semaphore: Arc<Semaphore>,
    max: usize,
}

impl Limit {
    /// `None` for 0 (no limit).
    pub(crate) fn new(max: usize) -> Option<Self> {
        (max > 0).then(|| Self { semaphore: Arc::new(Semaphore::new(max)), max })
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Requests being served now (those the limit applies to).
    pub(crate) fn in_flight(&self) -> usize {
        self.max - self.semaphore.available_permits().min(self.max)
    }

    /// `routes` served under the limit.
    pub(crate) fn apply<S: Clone + Send + Sync + 'static>(&self, routes: Router<S>) -> Router<S> {
        routes.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|e: tower::BoxError| async move { refusal(&e) }))
                .layer(LoadShedLayer::new())
                .layer(GlobalConcurrencyLimitLayer::with_semaphore(self.semaphore.clone())),
        )
    }
}

/// What a request past the limit is answered (the handler's services are infallible, so
/// shedding is the only error that reaches here).
fn refusal(e: &tower::BoxError) -> Response {
    if !e.is::<Overloaded>() {
        return ApiError(Error::Internal(format!("request service: {e}"))).into_response();
    }
    let mut resp = ApiError(Error::FacilitatorOverloaded).into_response();
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    const REQUESTS: usize = 20_000;

    /// `REQUESTS` requests to a trivial route, one at a time, with or without the limit.
    fn serve(limited: bool) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let routes = Router::new().route("/r", get(|| async { "ok" }));
        let app = match Limit::new(if limited { 64 } else { 0 }) {
            Some(limit) => limit.apply(routes),
            None => routes,
        };
        rt.block_on(async {
            for _ in 0..REQUESTS {
                let req = Request::get("/r").body(Body::empty()).unwrap();
                assert_eq!(app.clone().oneshot(req).await.unwrap().status(), 200);
            }
        });
    }

    // What the limit costs a request, in instructions the machine's load does not move: run
    // each under callgrind and subtract (the total of each, divided by REQUESTS):
    //   valgrind --tool=callgrind target/debug/deps/vlexivo_facilitator-<hash> --ignored --exact \
    //     server::shed::tests::requests_without_the_limit   (then ..._with_the_limit)
    #[test]
    #[ignore = "cost measurement, run under callgrind"]
    fn requests_without_the_limit() {
        serve(false);
    }

    #[test]
    #[ignore = "cost measurement, run under callgrind"]
    fn requests_with_the_limit() {
        serve(true);
    }
}
