//! HTTP handlers: the facilitator API of `docs/protocol.md` §8.

use super::AppState;
use super::checkpoint::{Checkpoint, CheckpointClaims};
use super::ledger::PayOp;
use super::types::*;
use axum::Json;
use axum::extract::{FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use vlexivo_core::keys::{Mode, ProviderKeys};
use vlexivo_core::money::{Currency, Money};
use vlexivo_core::paging::{self, PaymentFilter};
use vlexivo_core::payment::{self, PaymentReceipt, PaymentRequest};
use vlexivo_core::wallet::Address;
use vlexivo_core::{Error, api_bodies};

/// How long `/readyz` waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Marks a response as an error of this code, for the metrics middleware.
#[derive(Clone, Copy)]
struct ErrorCode(&'static str);

/// An error answered as `{"error", "message"}` with the code's status.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match &e {
            // Details of internal faults go to the log, not to the caller.
            Error::Internal(why) => {
                tracing::error!(error = %why, "internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let mut body =
            ErrorBody { error: e.code().to_string(), message, required: None, balance: None, currency: None };
        if let Error::InsufficientFunds { required, balance, currency } = &e {
            body.required = Some(required.clone());
            body.balance = Some(balance.clone());
            body.currency = Some(currency.clone());
        }
        let mut resp = (status, Json(body)).into_response();
        resp.extensions_mut().insert(ErrorCode(e.code()));
        resp
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A JSON body read with our size limit and our error shapes (axum's `Json` answers in text).
pub struct JsonBody<T>(pub T);

fn is_length_limit(e: &axum::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        src = s.source();
    }
    false
}

async fn read_body(req: Request) -> ApiResult<bytes::Bytes> {
    let too_large = || ApiError(Error::RequestTooLarge { limit: MAX_BODY_BYTES });
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await.map_err(|e| {
        if is_length_limit(&e) {
            too_large()
        } else {
            ApiError(Error::RequestMalformed("the request body could not be read".into()))
        }
    })
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = read_body(req).await?;
        Ok(JsonBody(api_bodies::from_json(&bytes)?))
    }
}

/// Latency histogram, error counts and a debug log line per request. Never logs headers or
/// bodies (secrets, signatures, tokens).
pub async fn track(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::HEAD => "HEAD",
        _ => "OTHER",
    };
    let resp = next.run(req).await;
    let secs = start.elapsed().as_secs_f64();
    st.metrics.observe(&route, method, secs);
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    if let Some(code) = code {
        st.metrics.error(code);
    }
    tracing::debug!(
        method,
        route = %route,
        status = resp.status().as_u16(),
        error = code.unwrap_or(""),
        micros = (secs * 1e6) as u64,
        "request"
    );
    resp
}

/// Unknown routes: the same JSON shape as every other error.
pub async fn not_found() -> Response {
    let body = ErrorBody {
        error: "not_found".into(),
        message: "no such endpoint".into(),
        required: None,
        balance: None,
        currency: None,
    };
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// 503 once the ledger is fenced after a disk I/O error, so a supervisor restarts the service.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "alive", body = serde_json::Value),
              (status = 503, description = "the ledger is fenced: restart", body = serde_json::Value)))]
pub async fn healthz(State(st): State<Arc<AppState>>) -> (StatusCode, Json<serde_json::Value>) {
    if st.ledger.is_fenced() {
        let body = serde_json::json!({
            "status": "failed",
            "reason": "the ledger stopped writing after a disk I/O error: restart the facilitator",
            "version": env!("CARGO_PKG_VERSION"),
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    (StatusCode::OK, Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})))
}

/// Readiness: 200 when the ledger's writer runs and the database answers a query within 2 s,
/// else 503 with the reason. A load balancer sends payments only to ready facilitators.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready: the database answers", body = Readiness),
              (status = 503, description = "not ready, with the reason", body = Readiness)))]
pub async fn readyz(State(st): State<Arc<AppState>>) -> (StatusCode, Json<Readiness>) {
    let database = st.reads.kind().to_string();
    let unready = |reason: String| {
        let body =
            Readiness { status: "unavailable".into(), database: database.clone(), reason: Some(reason) };
        (StatusCode::SERVICE_UNAVAILABLE, Json(body))
    };
    if st.ledger.is_fenced() {
        return unready("the ledger stopped writing after a disk I/O error: restart the facilitator".into());
    }
    if !st.ledger.is_running() {
        return unready("the ledger writer has stopped".into());
    }
    match tokio::time::timeout(READY_TIMEOUT, st.reads.ping()).await {
        Ok(Ok(())) => (
            StatusCode::OK,
            Json(Readiness { status: "ready".into(), database: database.clone(), reason: None }),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database query failed");
            unready("the database query failed".into())
        }
        Err(_) => unready(format!("the database did not answer within {} s", READY_TIMEOUT.as_secs())),
    }
}

/// The OpenAPI 3.1 document of this API (generated from the handlers, `server::openapi`).
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "this document", body = serde_json::Value)))]
pub async fn openapi_json(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], st.openapi_json.clone())
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text (Prometheus scrapes it)",
               content_type = "application/openmetrics-text", body = String)))]
pub async fn metrics(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    if let Some(limit) = &st.limit {
        st.metrics.in_flight(limit.in_flight(), limit.max());
    }
    ([(header::CONTENT_TYPE, HeaderValue::from_static(super::metrics::CONTENT_TYPE))], st.metrics.render())
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    responses((status = 200, description = "the EdDSA public keys that sign proof tokens (JWKS)", body = serde_json::Value)))]
pub async fn jwks(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300")),
        ],
        st.jwks_json.clone(),
    )
}

/// A signed checkpoint of every hash chain's head, to keep outside the facilitator and check
/// later with `vlexivo ledger verify --checkpoint` (`server::checkpoint`).
#[utoipa::path(get, path = "/v1/ledger/checkpoint", tag = "ledger",
    responses((status = 200, description = "the heads, signed (EdDSA JWS under the JWKS)", body = Checkpoint)))]
pub async fn ledger_checkpoint(State(st): State<Arc<AppState>>) -> ApiResult<Json<Checkpoint>> {
    let heads = st.reads.heads().await?;
    let claims = CheckpointClaims { iss: st.public_url.clone(), iat: st.clock.now(), heads };
    Ok(Json(super::checkpoint::sign(&st.signing_key, claims)?))
}

// ---------------------------------------------------------------------------------------------
// Providers

#[utoipa::path(post, path = "/v1/providers", tag = "providers",
    request_body(content = CreateProviderRequest, description = "every field optional; an empty body takes the defaults"),
    responses((status = 201, description = "the api_secret is shown once", body = ProviderCreated),
              (status = 400, body = ErrorBody)))]
pub async fn create_provider(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> ApiResult<(StatusCode, Json<ProviderCreated>)> {
    let body: CreateProviderRequest = api_bodies::from_optional_json(&read_body(req).await?)?;
    let created = st.create_provider(body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Bearer auth: derive the keys from the presented secret and compare the stored digest in
/// constant time. Every failure is the same opaque `unauthorized`.
async fn authenticate(st: &AppState, headers: &HeaderMap) -> ApiResult<Arc<super::ledger::Provider>> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or(Error::Unauthorized)?;
    Ok(authenticate_secret(st, secret).await?)
}

/// The provider an API secret belongs to (the API's bearer and the dashboard's sign-in).
pub(crate) async fn authenticate_secret(
    st: &AppState,
    secret: &str,
) -> Result<Arc<super::ledger::Provider>, Error> {
    use subtle::ConstantTimeEq;
    let keys = ProviderKeys::from_secret(secret).map_err(|_| Error::Unauthorized)?;
    let p = st.provider(&keys.account).await?.ok_or(Error::Unauthorized)?;
    let same: bool = p.auth_digest.ct_eq(&keys.auth_digest).into();
    if !same || p.mode != keys.mode {
        return Err(Error::Unauthorized);
    }
    Ok(p)
}

#[utoipa::path(get, path = "/v1/providers/me", tag = "providers", security(("api_secret" = [])),
    responses((status = 200, body = ProviderInfo), (status = 401, body = ErrorBody)))]
pub async fn provider_me(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<ProviderInfo>> {
    let p = authenticate(&st, &headers).await?;
    let (total, count, terms) = match &st.live {
        Some(live) => {
            // Revenue on chain: what settled (confirmed) or is on its way (submitted).
            let (count, total) = live.store.paid_total(&p.account, None, None).await?;
            let terms = live.terms(&p.account).await.ok().map(|t| LiveTermsBody::from(&t));
            (total, count, terms)
        }
        None => {
            let (total, count) = st.reads.revenue(p.account.clone()).await?;
            (total, count, None)
        }
    };
    let keys_pk = format!(
        "{}{}",
        if p.mode == Mode::Live { "pk_live_" } else { "pk_test_" },
        &p.key_account["acct_".len()..]
    );
    Ok(Json(ProviderInfo {
        account: p.account.clone(),
        mode: p.mode.as_str().into(),
        token_alg: p.token_alg.as_str().into(),
        publishable_key: keys_pk,
        name: p.name.clone(),
        revenue: Revenue { currency: "usd".into(), total: usd(total), count: count as u64 },
        terms,
    }))
}

/// A new apiSecret for the account (shown once); the current secrets keep working for the
/// overlap window, so the provider's servers can move to the new one without a refused call.
#[utoipa::path(post, path = "/v1/providers/me/rotate", tag = "providers", security(("api_secret" = [])),
    request_body(content = RotateRequest, description = "optional; an empty body takes the defaults"),
    responses((status = 201, description = "the new api_secret, shown once", body = ProviderRotated),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn rotate_provider(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<(StatusCode, Json<ProviderRotated>)> {
    let p = authenticate(&st, &headers).await?;
    let body: RotateRequest = api_bodies::from_optional_json(&read_body(req).await?)?;
    let rotated = st.rotate_provider(&p, &body).await?;
    Ok((StatusCode::CREATED, Json(rotated)))
}

#[utoipa::path(get, path = "/v1/providers/me/payments", tag = "providers", security(("api_secret" = [])),
    params(("limit" = Option<u32>, Query, description = "newest first; 1..=1000, default 100"),
           ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (opaque; only valid with the same filters)"),
           ("route" = Option<String>, Query, description = "only payments for this resource, exactly as recorded"),
           ("payer" = Option<String>, Query, description = "only payments from this address"),
           ("from" = Option<i64>, Query, description = "only payments at or after this time (Unix seconds)"),
           ("to" = Option<i64>, Query, description = "only payments before this time (Unix seconds)")),
    responses((status = 200, body = PaymentList),
              (status = 400, description = "request_malformed: a bad limit or filter, or a cursor this facilitator did not issue for this list", body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub async fn provider_payments(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<PaymentList>> {
    let p = authenticate(&st, &headers).await?;
    let limit = paging::parse_limit(query.get("limit").map(String::as_str))?;
    let filter = PaymentFilter::parse(|k| query.get(k).cloned())?;
    Ok(Json(payment_page(&st, &p.account, &filter, query.get("cursor").map(String::as_str), limit).await?))
}

/// One page of a provider's payments under `filter`, newest first, and the cursor of the next
/// page when there is one (the API's list and the dashboard's table).
pub(crate) async fn payment_page(
    st: &AppState,
    account: &str,
    filter: &PaymentFilter,
    cursor: Option<&str>,
    limit: u32,
) -> Result<PaymentList, Error> {
    let before = cursor.filter(|c| !c.is_empty()).map(|c| st.cursors.open(account, filter, c)).transpose()?;
    let mut rows = match &st.live {
        Some(live) => live
            .store
            .page(account, filter, before, limit + 1)
            .await?
            .into_iter()
            .map(|(pos, r)| {
                let rec = PaymentRecord {
                    nonce: r.nonce,
                    payer: r.payer,
                    amount: usd(r.amount),
                    currency: r.currency,
                    tx_hash: r.tx_hash,
                    resource: r.resource,
                    paid_at: r.paid_at as u64,
                    block: r.block_number.map(|b| b as u64),
                    failure: r.failure,
                    call_index: r.call_index.map(|i| i as u32),
                    reorgs: (r.reorgs > 0).then_some(r.reorgs as u32),
                    state: Some(if r.state == "signed" { "submitted".into() } else { r.state }),
                };
                (pos, rec)
            })
            .collect(),
        None => st.reads.payments(account.to_string(), filter.clone(), before, limit + 1).await?,
    };
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|(pos, _)| st.cursors.seal(account, filter, *pos))
    } else {
        None
    };
    Ok(PaymentList { payments: rows.into_iter().map(|(_, r)| r).collect(), next_cursor })
}

/// What one payer paid this provider since a time: the count and sum behind usage-based
/// prices. Only the authenticated provider's own payments are counted: another provider's
/// secret sees nothing of them (zero).
#[utoipa::path(get, path = "/v1/providers/me/payers/{address}/usage", tag = "providers",
    security(("api_secret" = [])),
    params(("address" = String, Path, description = "the payer: 0x + 40 hex digits (EIP-55 or lower case)"),
           ("since" = Option<u64>, Query, description = "unix seconds, inclusive; absent: since the beginning")),
    responses((status = 200, body = vlexivo_core::payer_pricing::Usage), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody)))]
pub async fn payer_usage(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(address): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<vlexivo_core::payer_pricing::Usage>> {
    let p = authenticate(&st, &headers).await?;
    let payer = Address::parse(&address)?.to_checksum();
    let since = vlexivo_core::payer_pricing::parse_since(query.get("since").map(String::as_str))?;
    let (count, total) = match &st.live {
        Some(live) => live.store.paid_total(&p.account, Some(&payer), Some(since)).await?,
        None => st.reads.usage(p.account.clone(), payer.clone(), since).await?,
    };
    Ok(Json(vlexivo_core::payer_pricing::Usage {
        payer,
        since,
        count: count.max(0) as u64,
        total: usd(total),
        currency: "usd".into(),
    }))
}

// ---------------------------------------------------------------------------------------------
// Wallets

pub(crate) fn usd(atomic: i64) -> String {
    Money::from_atomic(atomic.max(0) as u64, Currency::Usd)
        .map(|m| m.to_string())
        .unwrap_or_else(|_| atomic.to_string())
}

#[utoipa::path(get, path = "/v1/wallets/{address}", tag = "wallets",
    params(("address" = String, Path, description = "0x + 40 hex digits (EIP-55 or lower case)")),
    responses((status = 200, body = WalletBalance), (status = 400, body = ErrorBody)))]
pub async fn wallet_balance(
    State(st): State<Arc<AppState>>,
    Path(address): Path<String>,
) -> ApiResult<Json<WalletBalance>> {
    let address = Address::parse(&address)?;
    let balance = match &st.live {
        // On chain, less what this facilitator is still settling from it.
        Some(live) => live.balance(address).await? as i64,
        None => st.wallet_balance(address).await?,
    };
    Ok(Json(WalletBalance { address: address.to_checksum(), balance: usd(balance), currency: "usd".into() }))
}

#[utoipa::path(post, path = "/v1/wallets/{address}/topup", tag = "wallets",
    params(("address" = String, Path, description = "0x + 40 hex digits (EIP-55 or lower case)")),
    request_body = TopUpRequest,
    responses((status = 200, body = TopUpReceipt), (status = 400, body = ErrorBody),
              (status = 403, description = "top_up_refused: over the faucet cap", body = ErrorBody)))]
pub async fn top_up(
    State(st): State<Arc<AppState>>,
    Path(address): Path<String>,
    JsonBody(body): JsonBody<TopUpRequest>,
) -> ApiResult<Json<TopUpReceipt>> {
    let address = Address::parse(&address)?;
    if st.live.is_some() {
        return Err(ApiError(Error::TopUpRefused(
            "live wallets are funded on chain (a transfer of the token to the wallet), not by a faucet"
                .into(),
        )));
    }
    Ok(Json(st.top_up(address, &body).await?))
}

// ---------------------------------------------------------------------------------------------
// Payments

#[utoipa::path(post, path = "/v1/payments", tag = "payments",
    request_body(content = PaymentRequest, description = "the challenge as received, the payer and its EIP-712 signature"),
    responses((status = 200, description = "paid (or replayed: the same receipt, nothing debited)", body = PaymentReceipt),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 402, description = "insufficient_funds, with required and balance", body = ErrorBody)))]
pub async fn pay(
    State(st): State<Arc<AppState>>,
    JsonBody(req): JsonBody<PaymentRequest>,
) -> ApiResult<Json<PaymentReceipt>> {
    let challenge = payment::decode(&req)?;
    // Before any signature work: a payment addressed to another facilitator is not ours to make.
    payment::check_facilitator(&challenge, &st.public_url)?;
    let provider = st.provider(&challenge.account).await?.ok_or(Error::ProviderUnknown)?;
    if let Some(live) = &st.live {
        if challenge.mode != Mode::Live.as_str() || provider.mode != Mode::Live {
            return Err(ApiError(Error::ModeMismatch {
                expected: "live".into(),
                got: challenge.mode.clone(),
            }));
        }
        let receipt = live.pay(provider, &req, &st.issuer_url).await?;
        let m = &st.metrics;
        if receipt.replayed {
            m.payments_replayed.inc();
        } else {
            m.payments.inc();
            if let Ok(paid) = Money::parse(&receipt.amount, Currency::Usd) {
                m.amount_paid_atomic.inc_by(paid.to_atomic());
            }
        }
        tracing::debug!(payer = %receipt.payer, tx = %receipt.tx_hash, replayed = receipt.replayed, "live payment");
        return Ok(Json(receipt));
    }
    let now = st.clock.now();
    // MAC (the price and route are the provider's), expiry, and the payer's own signature.
    let verified = payment::verify(&req, challenge, &provider.challenge_mac, now)?;
    let c = &verified.challenge;
    if c.mode != provider.mode.as_str() {
        return Err(ApiError(Error::ModeMismatch {
            expected: provider.mode.as_str().into(),
            got: c.mode.clone(),
        }));
    }
    // This facilitator settles on its sandbox ledger only.
    if c.network != "sandbox" {
        return Err(ApiError(Error::ModeMismatch {
            expected: "network sandbox".into(),
            got: c.network.clone(),
        }));
    }
    let done = st.ledger.pay(PayOp { provider, verified, now }).await?;
    let m = &st.metrics;
    if done.receipt.replayed {
        m.payments_replayed.inc();
    } else {
        m.payments.inc();
        m.amount_paid_atomic.inc_by(done.amount);
    }
    tracing::debug!(payer = %done.receipt.payer, tx = %done.receipt.tx_hash, replayed = done.receipt.replayed, "payment");
    Ok(Json(done.receipt))
}
