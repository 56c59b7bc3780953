//! The provider dashboard at `/dashboard`: server-rendered pages (no client framework), one
//! small script that draws the revenue chart with uPlot, both embedded in the binary, so the
//! dashboard works offline and under a CSP without `unsafe-inline`.
//!
//! Sign-in exchanges the provider's API secret for a session: the secret is checked like the
//! API's bearer and then forgotten; the browser holds only a random session id in an HttpOnly,
//! SameSite=Strict cookie. Every form carries a CSRF token (the session's, or before sign-in a
//! double-submit token bound to its own cookie). Sessions live in this process's memory: a
//! restart signs everyone out, and a session ends when the secret it came from is retired.

mod html;
mod pages;

use super::AppState;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use html::{respond, see_other};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

const SESSION_COOKIE: &str = "vlx_session";
const LOGIN_COOKIE: &str = "vlx_login";
/// How long a session lasts without signing in again.
const SESSION_SECS: u64 = 8 * 3600;
/// Sessions kept at most (expired ones are dropped first).
const MAX_SESSIONS: usize = 10_000;

/// The signed-in browsers of this process.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Session>>);

#[derive(Clone)]
pub(crate) struct Session {
    /// The account the secret pays into, and the id of the secret itself (its rotation or
    /// retirement ends the session).
    pub account: String,
    pub key_account: String,
    pub csrf: String,
    pub expires: u64,
}

fn random_token(st: &AppState) -> String {
    let mut b = [0u8; 32];
    st.entropy.fill(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(st: &AppState, name: &str, value: &str, max_age: u64) -> String {
    let secure = if st.public_url.starts_with("https://") { "; Secure" } else { "" };
    format!("{name}={value}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Sessions {
    fn create(&self, s: Session, id: String, now: u64) {
        let mut m = self.0.lock();
        if m.len() >= MAX_SESSIONS {
            m.retain(|_, v| v.expires > now);
        }
        if m.len() >= MAX_SESSIONS {
            // Still full of live sessions: the one closest to expiry gives way.
            if let Some(k) = m.iter().min_by_key(|(_, v)| v.expires).map(|(k, _)| k.clone()) {
                m.remove(&k);
            }
        }
        m.insert(id, s);
    }

    fn get(&self, id: &str, now: u64) -> Option<Session> {
        let mut m = self.0.lock();
        match m.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                m.remove(id);
                None
            }
            None => None,
        }
    }

    fn remove(&self, id: &str) {
        self.0.lock().remove(id);
    }
}

/// Why a dashboard request is refused.
enum Refused {
    /// No (valid) session: pages send the browser to sign in; other requests get 401.
    NoSession,
    /// A form without the right CSRF token.
    Csrf,
}

/// The signed-in session of a request (and its id), checked against the provider's secret.
async fn session(st: &AppState, headers: &HeaderMap) -> Result<(String, Session), Refused> {
    let id = cookie(headers, SESSION_COOKIE).ok_or(Refused::NoSession)?;
    let s = st.sessions.get(&id, st.clock.now()).ok_or(Refused::NoSession)?;
    // The secret it came from must still be a provider's (not retired by a rotation).
    match st.provider(&s.key_account).await {
        Ok(Some(_)) => Ok((id, s)),
        _ => {
            st.sessions.remove(&id);
            Err(Refused::NoSession)
        }
    }
}

/// A signed-in form post: the session, and the form's CSRF token equal to the session's.
async fn form_session(
    st: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(String, Session), Refused> {
    let (id, s) = session(st, headers).await?;
    match form.get("csrf") {
        Some(t) if same(t, &s.csrf) => Ok((id, s)),
        _ => Err(Refused::Csrf),
    }
}

fn refused(r: Refused, page: bool) -> Response {
    match r {
        Refused::NoSession if page => see_other("/dashboard/login", &[]),
        Refused::NoSession => respond(
            StatusCode::UNAUTHORIZED,
            html::page("Signed out", html::Nav::None, None, false, pages::SIGNED_OUT),
            &[],
        ),
        Refused::Csrf => respond(
            StatusCode::FORBIDDEN,
            html::page("Refused", html::Nav::None, None, false, pages::CSRF_REFUSED),
            &[],
        ),
    }
}

pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/dashboard", get(overview))
        .route("/dashboard/", get(overview))
        .route("/dashboard/login", get(login_page).post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/payments", get(payments))
        .route("/dashboard/payments.csv", get(payments_csv))
        .route("/dashboard/wallets", get(wallets))
        .route("/dashboard/wallets/topup", post(wallet_top_up))
        .route("/dashboard/assets/{file}", get(asset))
}

type Form = axum::extract::Form<HashMap<String, String>>;
type Query = axum::extract::Query<HashMap<String, String>>;

fn login_form(st: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let token = random_token(st);
    let body = pages::login(&token, error, st.live.is_none());
    respond(
        status,
        html::page("Sign in", html::Nav::None, None, false, &body),
        &[set_cookie(st, LOGIN_COOKIE, &token, 1800)],
    )
}

async fn login_page(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if session(&st, &headers).await.is_ok() {
        return see_other("/dashboard", &[]);
    }
    login_form(&st, StatusCode::OK, None)
}

async fn login(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Form(form): Form,
) -> Response {
    // Double-submit: the form's token must equal its cookie, which only this origin's own
    // sign-in page set (and SameSite=Strict keeps it off cross-site posts).
    let ok = match (cookie(&headers, LOGIN_COOKIE), form.get("csrf")) {
        (Some(c), Some(f)) => same(&c, f),
        _ => false,
    };
    if !ok {
        return refused(Refused::Csrf, false);
    }
    let secret = form.get("secret").map(|s| s.trim()).unwrap_or("");
    let p = match super::api::authenticate_secret(&st, secret).await {
        Ok(p) => p,
        Err(e) if e.code() == "unauthorized" => {
            tracing::info!("dashboard sign-in refused");
            return login_form(&st, StatusCode::UNAUTHORIZED, Some("That secret was not accepted."));
        }
        Err(e) => return super::api::ApiError(e).into_response(),
    };
    let now = st.clock.now();
    let id = random_token(&st);
    let s = Session {
        account: p.account.clone(),
        key_account: p.key_account.clone(),
        csrf: random_token(&st),
        expires: now + SESSION_SECS,
    };
    st.sessions.create(s, id.clone(), now);
    tracing::info!(account = %p.account, "dashboard sign-in");
    see_other(
        "/dashboard",
        &[set_cookie(&st, SESSION_COOKIE, &id, SESSION_SECS), set_cookie(&st, LOGIN_COOKIE, "", 0)],
    )
}

async fn logout(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Form(form): Form,
) -> Response {
    match form_session(&st, &headers, &form).await {
        Ok((id, _)) => {
            st.sessions.remove(&id);
            see_other("/dashboard/login", &[set_cookie(&st, SESSION_COOKIE, "", 0)])
        }
        Err(r) => refused(r, false),
    }
}

async fn overview(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(q): Query,
) -> Response {
    let s = match session(&st, &headers).await {
        Ok((_, s)) => s,
        Err(r) => return refused(r, true),
    };
    match pages::overview(&st, &s, &q).await {
        Ok(body) => respond(
            StatusCode::OK,
            html::page("Overview", html::Nav::Overview, Some(&s.csrf), st.live.is_none(), &body),
            &[],
        ),
        Err(e) => error_page(&st, &s, e),
    }
}

async fn payments(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(q): Query,
) -> Response {
    let s = match session(&st, &headers).await {
        Ok((_, s)) => s,
        Err(r) => return refused(r, true),
    };
    let (status, body) = pages::payments(&st, &s, &q).await;
    respond(status, html::page("Payments", html::Nav::Payments, Some(&s.csrf), st.live.is_none(), &body), &[])
}

async fn payments_csv(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(q): Query,
) -> Response {
    let s = match session(&st, &headers).await {
        Ok((_, s)) => s,
        Err(r) => return refused(r, false),
    };
    match pages::csv(&st, &s, &q).await {
        Ok(csv) => {
            let mut r = csv.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
            h.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"vlexivo-payments.csv\""),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            html::secure_headers(h);
            r
        }
        Err(e) => error_page(&st, &s, e),
    }
}

async fn wallets(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(q): Query,
) -> Response {
    let s = match session(&st, &headers).await {
        Ok((_, s)) => s,
        Err(r) => return refused(r, true),
    };
    let (status, body) = pages::wallets(&st, &q, &s.csrf).await;
    respond(
        status,
        html::page("Sandbox wallets", html::Nav::Wallets, Some(&s.csrf), st.live.is_none(), &body),
        &[],
    )
}

async fn wallet_top_up(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Form(form): Form,
) -> Response {
    let s = match form_session(&st, &headers, &form).await {
        Ok((_, s)) => s,
        Err(r) => return refused(r, false),
    };
    let (status, body) = pages::top_up(&st, &form, &s.csrf).await;
    respond(
        status,
        html::page("Sandbox wallets", html::Nav::Wallets, Some(&s.csrf), st.live.is_none(), &body),
        &[],
    )
}

fn error_page(st: &AppState, s: &Session, e: vlexivo_core::Error) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let msg = match &e {
        vlexivo_core::Error::Internal(why) => {
            tracing::error!(error = %why, "dashboard: internal error");
            "internal error".to_string()
        }
        other => other.to_string(),
    };
    let body =
        format!("<h1>Something went wrong</h1><p class=\"error\" role=\"alert\">{}</p>", html::esc(&msg));
    respond(status, html::page("Error", html::Nav::None, Some(&s.csrf), st.live.is_none(), &body), &[])
}

/// The embedded assets: uPlot (npm `uplot`, `assets/rebuild.sh`), the chart script, the styles.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, ty): (&'static [u8], &str) = match file.as_str() {
        "uPlot.iife.min.js" => (include_bytes!("assets/uPlot.iife.min.js"), "text/javascript; charset=utf-8"),
        "uPlot.min.css" => (include_bytes!("assets/uPlot.min.css"), "text/css; charset=utf-8"),
        "dashboard.js" => (include_bytes!("assets/dashboard.js"), "text/javascript; charset=utf-8"),
        "dashboard.css" => (include_bytes!("assets/dashboard.css"), "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ty).expect("static"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    html::secure_headers(h);
    r
}
