//! The layer executes core's response policy on a real axum server on 127.0.0.1 (proofs signed
//! with the provider's own HS256 key, as the facilitator would): only CORS preflights are free,
//! HEAD pays as GET does, the nonce's fate follows the handler's outcome and not the connection,
//! receipts go out only with payments that are kept, and a `Router::layer` paywall over a
//! route's own asks one price once (from the first request when declared with `around`) and
//! consumes one nonce.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{any, get};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use vlexivo_core::env::{Clock, SystemClock};
use vlexivo_core::keys::ProviderKeys;
use vlexivo_core::paywall::{Paywall, PaywallConfig};
use vlexivo_core::store::{MemoryStore, NonceStore};
use vlexivo_core::token::{ProofClaims, SigningKey, TokenIssuer};
use vlexivo_tower::{PaywallLayer, Price};

const SECRET: &str = "sk_test_BQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU";
const ORIGIN: &str = "http://api.test";

struct Env {
    url: String,
    keys: ProviderKeys,
    paywall: Arc<Paywall>,
    store: Arc<dyn NonceStore>,
}

impl Env {
    fn new() -> Self {
        let mut cfg = PaywallConfig::new(SECRET);
        cfg.origin = Some(ORIGIN.into());
        Self {
            url: String::new(),
            keys: ProviderKeys::from_secret(SECRET).unwrap(),
            paywall: Arc::new(Paywall::new(cfg).unwrap()),
            store: Arc::new(MemoryStore::new()),
        }
    }

    fn layer(&self, price: &str) -> PaywallLayer {
        PaywallLayer::new(self.paywall.clone(), self.store.clone(), Price::fixed(price))
    }

    async fn serve(mut self, app: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        self
    }

    /// A proof for `METHOD path` at this origin paying `amount`, as the facilitator signs it.
    fn proof(&self, method: &str, path: &str, amount: &str) -> String {
        let now = SystemClock.now();
        let mut jti = [0u8; 18];
        vlexivo_core::env::Entropy::fill(&vlexivo_core::env::OsEntropy, &mut jti);
        TokenIssuer::new(SigningKey::Hs256(self.keys.token_hs256))
            .unwrap()
            .issue(&ProofClaims {
                jti: vlexivo_core::env::random_b64(&vlexivo_core::env::OsEntropy, 18),
                iss: "http://127.0.0.1:4020".into(),
                aud: self.keys.account.clone(),
                sub: "0x0000000000000000000000000000000000000001".into(),
                txh: format!("0x{}", "ab".repeat(32)),
                amt: amount.into(),
                cur: "usd".into(),
                res: format!("{method} {ORIGIN}{path}"),
                bdy: None,
                mode: "sandbox".into(),
                net: "sandbox".into(),
                iat: now,
                exp: now + 300,
            })
            .unwrap()
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        proof: Option<&str>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", self.url));
        if let Some(p) = proof {
            req = req.header("vlexivo-proof", p);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }
}

async fn status_and_body(res: reqwest::Response) -> (u16, serde_json::Value) {
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn only_a_cors_preflight_is_free_and_head_pays_as_get() {
    let env = Env::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let handler = move || {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            "paid content"
        }
    };
    let app = Router::new()
        .route("/any", any(handler.clone()).layer(env.layer("0.002")))
        .route("/get", get(handler).layer(env.layer("0.003")));
    let env = env.serve(app).await;

    let preflight = [("origin", "https://app.example"), ("access-control-request-method", "GET")];
    assert_eq!(env.send("OPTIONS", "/any", None, &preflight).await.status(), StatusCode::OK);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "a preflight passes unpaid");
    // A plain OPTIONS (or any other method) pays like any request.
    let (s, b) = status_and_body(env.send("OPTIONS", "/any", None, &[]).await).await;
    assert_eq!((s, b["price"].as_str()), (402, Some("0.002")));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // HEAD on a GET route costs what GET costs, and its proof is bound to HEAD.
    let res = env.send("HEAD", "/get", None, &[]).await;
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED);
    let challenge = res.headers()["vlexivo-challenge"].to_str().unwrap().to_string();
    let c = vlexivo_core::challenge::Challenge::decode(&challenge).unwrap();
    assert_eq!((c.method.as_str(), c.amount.as_str()), ("HEAD", "0.003"));
    assert_eq!(env.send("HEAD", "/get", Some(&env.proof("GET", "/get", "0.003")), &[]).await.status(), 402);
    let ok = env.send("HEAD", "/get", Some(&env.proof("HEAD", "/get", "0.003")), &[]).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers().contains_key("vlexivo-receipt"));
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_client_that_goes_away_does_not_free_the_nonce() {
    let env = Env::new();
    let started = Arc::new(Notify::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let (s, r) = (started.clone(), runs.clone());
    let slow = get(move |headers: axum::http::HeaderMap| {
        let (s, r) = (s.clone(), r.clone());
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            if headers.contains_key("x-slow") {
                s.notify_one();
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            "done"
        }
    });
    let app = Router::new().route("/slow", slow.layer(env.layer("0.001")));
    let env = env.serve(app).await;
    let proof = env.proof("GET", "/slow", "0.001");
    // The client gives up while the handler runs: hyper drops the handler's future.
    let pending = env.send("GET", "/slow", Some(&proof), &[("x-slow", "1")]);
    tokio::select! {
        _ = pending => panic!("the slow handler answered"),
        _ = started.notified() => {}
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The payment bought that run: the same proof is spent (before the fix it was released and
    // bought another run, and another).
    let (s, b) = status_and_body(env.send("GET", "/slow", Some(&proof), &[]).await).await;
    assert_eq!((s, b["error"].as_str()), (409, Some("token_replayed")));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_handlers_status_decides_release_and_receipt() {
    let env = Env::new();
    let app = Router::new()
        .route(
            "/teapot",
            get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }).layer(env.layer("0.001")),
        )
        .route(
            "/down",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }).layer(env.layer("0.001")),
        );
    let env = env.serve(app).await;
    // A 4xx the handler completed keeps the payment and carries the receipt.
    let p = env.proof("GET", "/teapot", "0.001");
    let res = env.send("GET", "/teapot", Some(&p), &[]).await;
    assert_eq!(res.status().as_u16(), 418);
    assert!(res.headers().contains_key("vlexivo-receipt"));
    assert_eq!(env.send("GET", "/teapot", Some(&p), &[]).await.status().as_u16(), 409);
    // A 5xx releases (the same proof works again) and carries no receipt.
    let p = env.proof("GET", "/down", "0.001");
    for _ in 0..2 {
        let res = env.send("GET", "/down", Some(&p), &[]).await;
        assert_eq!(res.status().as_u16(), 503);
        assert!(!res.headers().contains_key("vlexivo-receipt"));
    }
}

#[tokio::test]
async fn a_router_paywall_over_a_routes_own_asks_one_price_and_consumes_once() {
    let env = Env::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let premium = get(move || {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            "premium"
        }
    });
    let app = Router::new()
        .route("/zone/premium", premium.layer(env.layer("0.05")))
        .route("/zone/basic", get(|| async { "basic" }))
        .layer(env.layer("0.001"));
    let env = env.serve(app).await;

    // A route with only the router's paywall costs its price.
    let (s, b) = status_and_body(env.send("GET", "/zone/basic", None, &[]).await).await;
    assert_eq!((s, b["price"].as_str()), (402, Some("0.001")));

    // The premium route: a proof that pays the router's price only is refused by the route's
    // paywall, which gives the nonce back and asks its own price; the router's paywall learns it.
    let cheap = env.proof("GET", "/zone/premium", "0.001");
    let (s, b) = status_and_body(env.send("GET", "/zone/premium", Some(&cheap), &[]).await).await;
    assert_eq!((s, b["error"].as_str(), b["price"].as_str()), (402, Some("token_underpaid"), Some("0.05")));
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    // From then on the first 402 asks the one effective price.
    let (s, b) = status_and_body(env.send("GET", "/zone/premium", None, &[]).await).await;
    assert_eq!((s, b["price"].as_str()), (402, Some("0.05")));
    // A proof at that price is consumed once (no second consume, no 409) and served.
    let good = env.proof("GET", "/zone/premium", "0.05");
    let res = env.send("GET", "/zone/premium", Some(&good), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get_all("vlexivo-receipt").iter().count(), 1);
    assert_eq!(res.text().await.unwrap(), "premium");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    // And it is spent.
    let (s, b) = status_and_body(env.send("GET", "/zone/premium", Some(&good), &[]).await).await;
    assert_eq!((s, b["error"].as_str()), (409, Some("token_replayed")));
    // A proof under the effective price is refused by the router's paywall itself.
    let (s, b) = status_and_body(env.send("GET", "/zone/premium", Some(&cheap), &[]).await).await;
    assert_eq!((s, b["error"].as_str(), b["price"].as_str()), (402, Some("token_underpaid"), Some("0.05")));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_declared_inner_paywall_is_asked_for_on_the_first_request() {
    let env = Env::new();
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let premium_paywall = env.layer("0.05");
    let premium = get(move || {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            "premium"
        }
    });
    let app = Router::new()
        .nest("/zone", Router::new().route("/premium", premium.layer(premium_paywall.clone())))
        .route("/basic", get(|| async { "basic" }))
        .layer(env.layer("0.001").around("/zone/premium", &premium_paywall));
    let env = env.serve(app).await;

    // The very first request to the route asks the effective price; other routes keep theirs.
    let (s, b) = status_and_body(env.send("GET", "/zone/premium", None, &[]).await).await;
    assert_eq!((s, b["price"].as_str()), (402, Some("0.05")));
    let (s, b) = status_and_body(env.send("GET", "/basic", None, &[]).await).await;
    assert_eq!((s, b["price"].as_str()), (402, Some("0.001")));
    // A proof at the outer price alone is refused before anything is consumed or run.
    let cheap = env.proof("GET", "/zone/premium", "0.001");
    let (s, b) = status_and_body(env.send("GET", "/zone/premium", Some(&cheap), &[]).await).await;
    assert_eq!((s, b["error"].as_str(), b["price"].as_str()), (402, Some("token_underpaid"), Some("0.05")));
    // One proof at the effective price: consumed once, served once, one receipt.
    let good = env.proof("GET", "/zone/premium", "0.05");
    let res = env.send("GET", "/zone/premium", Some(&good), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get_all("vlexivo-receipt").iter().count(), 1);
    assert_eq!(res.text().await.unwrap(), "premium");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let (s, b) = status_and_body(env.send("GET", "/zone/premium", Some(&good), &[]).await).await;
    assert_eq!((s, b["error"].as_str()), (409, Some("token_replayed")));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// A browser without a proof gets core's HTML page (same 402 and challenge); an SDK, curl or a
/// browser that carries a proof keeps the JSON.
#[tokio::test]
async fn a_browser_gets_the_html_paywall_page_and_clients_keep_json() {
    let env = Env::new();
    let app = Router::new().route("/paid", get(|| async { "paid content" }).layer(env.layer("0.25")));
    let env = env.serve(app).await;
    let browser = [("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")];
    let res = env.send("GET", "/paid", None, &browser).await;
    assert_eq!(res.status(), StatusCode::PAYMENT_REQUIRED);
    assert!(res.headers().contains_key("vlexivo-challenge"));
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(!csp.contains("unsafe-inline") && csp.contains("default-src 'none'"), "{csp}");
    let html = res.text().await.unwrap();
    assert!(
        html.contains("<p class=\"price\" id=\"price\">0.25 <abbr title=\"usd\">USD</abbr></p>"),
        "{html}"
    );
    assert!(html.contains("GET http://api.test/paid"), "{html}");
    for headers in [&[("accept", "*/*")][..], &[("accept", "application/json")][..], &[][..]] {
        let (s, b) = status_and_body(env.send("GET", "/paid", None, headers).await).await;
        assert_eq!((s, b["price"].as_str()), (402, Some("0.25")), "{headers:?}");
    }
    // A proof that fails is answered in JSON even to a browser: the client that sent it reads it.
    let (s, b) = status_and_body(env.send("GET", "/paid", Some("not-a-token"), &browser).await).await;
    assert_eq!((s, b["error"].as_str()), (402, Some("token_malformed")));
}

/// Core's CORS rule: every answer to a request carrying `Origin`, paid or refused, lists our
/// headers in `Access-Control-Expose-Headers` (after the application's own); an answer to any
/// other request is left without it.
#[tokio::test]
async fn only_cross_origin_answers_expose_our_headers() {
    let env = Env::new();
    let own = || async { ([("access-control-expose-headers", "X-Request-Id")], "paid content") };
    let app = Router::new()
        .route("/paid", get(|| async { "paid content" }).layer(env.layer("0.001")))
        .route("/own", get(own).layer(env.layer("0.001")));
    let env = env.serve(app).await;
    let expose = |res: &reqwest::Response| {
        res.headers().get("access-control-expose-headers").map(|v| v.to_str().unwrap().to_string())
    };
    let cors = [("origin", "https://app.example")];
    let ours = vlexivo_core::headers::EXPOSE;
    for (path, want) in [("/paid", ours.to_string()), ("/own", format!("X-Request-Id, {ours}"))] {
        // Refused (402), then paid (200), from a browser page on another origin.
        let res = env.send("GET", path, None, &cors).await;
        assert_eq!((res.status().as_u16(), expose(&res)), (402, Some(ours.to_string())), "{path}");
        let res = env.send("GET", path, Some(&env.proof("GET", path, "0.001")), &cors).await;
        assert_eq!((res.status().as_u16(), expose(&res)), (200, Some(want)), "{path}");
        // The same without Origin: nothing exposed (the application's own header stays its own).
        let res = env.send("GET", path, None, &[]).await;
        assert_eq!((res.status().as_u16(), expose(&res)), (402, None), "{path}");
        let res = env.send("GET", path, Some(&env.proof("GET", path, "0.001")), &[]).await;
        let own = (path == "/own").then(|| "X-Request-Id".to_string());
        assert_eq!((res.status().as_u16(), expose(&res)), (200, own), "{path}");
    }
}
