//! What an operator deploys: the OpenAPI document (against docs/protocol.md §8 and the live
//! router), readiness that follows the database (a real PostgreSQL stopped and restarted), and
//! CORS on the endpoints a payer's web page calls, and only there.

use serde_json::Value;
use std::collections::BTreeSet;
use vlexivo_facilitator::server::{self, CorsOrigins, RunningServer, ServerConfig};

async fn facilitator(dir: &std::path::Path, f: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut cfg = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        db_path: dir.join("f.db"),
        public_url: Some("https://pay.example.com".into()),
        ..ServerConfig::default()
    };
    f(&mut cfg);
    server::spawn(cfg).await.unwrap()
}

/// `(METHOD, /path)` of each endpoint row of docs/protocol.md §8, with the answer's top-level
/// field names when the row shows a JSON object.
fn protocol_endpoints() -> Vec<(String, String, Vec<String>)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md")).unwrap();
    let s8 = doc.split("## 8. ").nth(1).unwrap().split("\n## 9. ").next().unwrap();
    let mut out = Vec::new();
    for row in s8.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let answer = cells.last().unwrap().split('→').nth(1).unwrap_or("");
        let fields = top_level_keys(answer);
        for ep in cells[0].trim_start_matches("| ").split(", ") {
            let ep = ep.trim_matches('`');
            let (method, path) = ep.split_once(' ').unwrap();
            let path = path.split('?').next().unwrap();
            out.push((method.to_string(), path.to_string(), fields.clone()));
        }
    }
    out
}

/// The keys at depth 1 of the first `{…}` in a row's answer: `{"a","b":{"c"}}` → a, b.
fn top_level_keys(s: &str) -> Vec<String> {
    let Some(start) = s.find('{') else { return vec![] };
    let (mut depth, mut keys, mut cur, mut in_str) = (0, vec![], String::new(), false);
    for c in s[start..].chars() {
        match c {
            '"' if in_str => {
                in_str = false;
                // Nested names (`[{"nonce",…}]`) end here too, or they would run into the next key.
                let name = std::mem::take(&mut cur);
                if depth == 1 {
                    keys.push(name);
                }
            }
            '"' => in_str = true,
            _ if in_str => cur.push(c),
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    // Values written as strings (`"token_alg"?:"HS256"`) are not keys: keep names only.
    keys.retain(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    keys
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling {r}")),
        None => v,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_protocol_and_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let srv = facilitator(dir.path(), |_| {}).await;
    let http = reqwest::Client::new();
    let doc: Value =
        http.get(format!("{}/openapi.json", srv.url)).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    assert_eq!(doc["servers"][0]["url"], "https://pay.example.com");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let spec = protocol_endpoints();
    let specified: BTreeSet<_> = spec.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    assert_eq!(documented, specified, "OpenAPI paths vs docs/protocol.md §8");

    // Each documented answer field is in the 2xx schema.
    let with_fields = spec.iter().filter(|(_, _, f)| !f.is_empty()).count();
    assert!(with_fields >= 6, "the §8 parser found answer fields in only {with_fields} rows");
    for (method, path, fields) in &spec {
        let op = &doc["paths"][path][method.to_lowercase()];
        let ok = op["responses"].as_object().unwrap().iter().find(|(s, _)| s.starts_with('2')).unwrap().1;
        let ok = resolve(&doc, ok);
        let schema = resolve(&doc, &ok["content"]["application/json"]["schema"]);
        for f in fields {
            assert!(schema["properties"].get(f).is_some(), "{method} {path}: `{f}` is not in {schema}");
        }
    }

    // Each documented route is served (not the fallback's 404, not 405).
    for (method, path) in &documented {
        let url =
            format!("{}{}", srv.url, path.replace("{address}", "0x0000000000000000000000000000000000000001"));
        let req = http.request(method.parse().unwrap(), url);
        let req = if method == "POST" { req.json(&serde_json::json!({})) } else { req };
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status != 405 && body["error"] != "not_found", "{method} {path}: {status} {body}");
    }
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let ready = |url: String| {
        let http = http.clone();
        async move {
            let res = http.get(format!("{url}/readyz")).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };

    let lite = facilitator(dir.path(), |_| {}).await;
    let (status, body) = ready(lite.url.clone()).await;
    assert_eq!(
        (status, body["status"].as_str(), body["database"].as_str()),
        (200, Some("ready"), Some("sqlite"))
    );
    lite.shutdown().await;

    let pg = vlexivo_testkit::Server::postgres();
    let url = pg.database("readyz");
    let srv = facilitator(dir.path(), |c| c.database_url = Some(url.clone())).await;
    assert_eq!(ready(srv.url.clone()).await.0, 200);
    // Liveness stays 200 (restarting would not help); readiness says why it is out.
    pg.stop();
    let (status, body) = ready(srv.url.clone()).await;
    assert_eq!((status, body["database"].as_str()), (503, Some("postgres")), "{body}");
    assert!(body["reason"].as_str().unwrap().contains("database"), "{body}");
    assert!(!body.to_string().contains("postgres://"), "no URL (and password) in the answer: {body}");
    let health = http.get(format!("{}/healthz", srv.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    pg.restart();
    let mut back = 0;
    for _ in 0..300 {
        back = ready(srv.url.clone()).await.0;
        if back == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(back, 200, "ready again once the database is back");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_on_the_payer_endpoints_only() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let preflight = |base: String, path: &'static str, origin: &'static str| {
        let http = http.clone();
        async move {
            let res = http
                .request(reqwest::Method::OPTIONS, format!("{base}{path}"))
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "POST")
                .header("Access-Control-Request-Headers", "content-type")
                .send()
                .await
                .unwrap();
            res.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string())
        }
    };
    let any = facilitator(dir.path(), |_| {}).await;
    let app = "https://app.example.com";
    assert_eq!(preflight(any.url.clone(), "/v1/payments", app).await.as_deref(), Some("*"));
    assert_eq!(preflight(any.url.clone(), "/.well-known/jwks.json", app).await.as_deref(), Some("*"));
    // A real cross-origin read carries the header too.
    let res = http
        .get(format!("{}/v1/wallets/0x0000000000000000000000000000000000000001", any.url))
        .header("Origin", app)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    // The provider endpoints (the apiSecret) and operations are not for web pages.
    assert_eq!(preflight(any.url.clone(), "/v1/providers", app).await, None);
    assert_eq!(preflight(any.url.clone(), "/v1/providers/me", app).await, None);
    assert_eq!(preflight(any.url.clone(), "/metrics", app).await, None);
    any.shutdown().await;

    let dir2 = tempfile::tempdir().unwrap();
    let listed = facilitator(dir2.path(), |c| {
        c.cors = CorsOrigins::parse("https://app.example.com, https://b.example").unwrap()
    })
    .await;
    assert_eq!(preflight(listed.url.clone(), "/v1/payments", app).await.as_deref(), Some(app));
    assert_eq!(preflight(listed.url.clone(), "/v1/payments", "https://evil.example").await, None);
    listed.shutdown().await;

    let dir3 = tempfile::tempdir().unwrap();
    let off = facilitator(dir3.path(), |c| c.cors = CorsOrigins::Off).await;
    assert_eq!(preflight(off.url.clone(), "/v1/payments", app).await, None);
    off.shutdown().await;

    for bad in ["app.example.com", "https://app.example.com/path", "https://"] {
        assert_eq!(CorsOrigins::parse(bad).unwrap_err().code(), "config_invalid", "{bad}");
    }
}
