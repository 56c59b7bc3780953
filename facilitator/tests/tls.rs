//! TLS end to end: a facilitator serving HTTPS (`ServerConfig::tls`, `vlexivo serve --tls-cert`)
//! and a paid API over HTTPS, both with certificates from a CA generated here (rcgen); the Rust
//! client and `vlexivo pay` pay through them when told to trust that CA, and refuse, with one
//! clear sentence, an untrusted, expired or wrong-host certificate and a plain-http facilitator
//! under https-only.

use axum_server::tls_rustls::RustlsConfig;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vlexivo_client::VlexivoClient;
use vlexivo_client::tls::{TlsConfig, TrustRoots};
use vlexivo_core::env::OsEntropy;
use vlexivo_core::paywall::{Paywall, PaywallConfig};
use vlexivo_core::store::MemoryStore;
use vlexivo_core::wallet::Wallet;
use vlexivo_facilitator::demo::paid_api;
use vlexivo_facilitator::server::{self, RunningServer, ServerConfig, TlsFiles};

#[path = "../examples/test_pki.rs"]
mod test_pki;

/// The test PKI in a temp dir that lives as long as it.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    good: TlsFiles,
    expired: TlsFiles,
    wrong_host: TlsFiles,
}

impl Pki {
    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let p = test_pki::generate(dir.path());
    let files = |l: test_pki::Leaf| TlsFiles { cert: l.cert, key: l.key };
    Pki {
        ca_pem: p.ca_pem,
        good: files(p.good),
        expired: files(p.expired),
        wrong_host: files(p.wrong_host),
        dir,
    }
}

async fn facilitator(dir: &Path, tls: Option<TlsFiles>) -> RunningServer {
    server::spawn(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        db_path: dir.join(format!("f{}.db", rand_suffix())),
        tls,
        ..ServerConfig::default()
    })
    .await
    .unwrap()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A paid API (the demo's routes) for a new provider of `srv`, naming `srv.url` in challenges.
/// Its origin is configured, as in production: behind a TLS listener the paywall cannot tell
/// the scheme from the request itself.
async fn api(srv: &RunningServer, tls: Option<&TlsFiles>) -> String {
    let p = srv.create_provider(None, None).await.unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    let mut cfg = PaywallConfig::new(p.api_secret);
    cfg.facilitator_url = srv.url.clone();
    cfg.origin = Some(url.clone());
    let app = paid_api(Arc::new(Paywall::new(cfg).unwrap()), Arc::new(MemoryStore::new()));
    match tls {
        Some(files) => {
            let cfg = RustlsConfig::from_pem_file(&files.cert, &files.key).await.unwrap();
            let server = axum_server::from_tcp_rustls(listener, cfg).unwrap();
            tokio::spawn(async move { server.serve(app.into_make_service()).await });
        }
        None => {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
    }
    url
}

async fn funded_wallet(srv: &RunningServer) -> Wallet {
    let w = Wallet::generate(&OsEntropy);
    srv.top_up(&w.address().to_checksum(), "1").await.unwrap();
    w
}

/// A client that trusts `facilitator` (the one the API's challenges name).
fn client(w: &Wallet, tls: TlsConfig, facilitator: &str) -> VlexivoClient {
    VlexivoClient::builder().wallet(w.clone()).tls(tls).facilitator_url(Some(facilitator)).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_pays_over_https_with_a_private_ca() {
    let pki = pki();
    let srv = facilitator(pki.dir.path(), Some(pki.good.clone())).await;
    assert!(srv.url.starts_with("https://127.0.0.1:"), "{}", srv.url);
    let api = api(&srv, Some(&pki.good)).await;
    let w = funded_wallet(&srv).await;

    for roots in [TrustRoots::WebPki, TrustRoots::Platform, TrustRoots::Auto] {
        let tls = TlsConfig::new().roots(roots).https_only(true).add_ca_pem(pki.ca_pem.as_bytes()).unwrap();
        let res = client(&w, tls, &srv.url).get(&format!("{api}/api/v1/hello")).await.unwrap();
        assert_eq!(res.status(), 200, "{roots:?}");
        let receipt = vlexivo_client::receipt_of(&res).cloned().expect("paid");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["paid"], "0.001");
        assert!(receipt.tx_hash.starts_with("0x"));
    }
    assert_eq!(srv.balance(&w.address().to_checksum()).await.unwrap(), "0.997");
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_refuses_untrusted_expired_and_wrong_host_certificates() {
    let pki = pki();
    let srv = facilitator(pki.dir.path(), Some(pki.good.clone())).await;
    let w = funded_wallet(&srv).await;
    let trusted = || TlsConfig::new().add_ca_pem(pki.ca_pem.as_bytes()).unwrap();

    // The CA is not among the built-in roots.
    let good_api = api(&srv, Some(&pki.good)).await;
    for roots in [TrustRoots::WebPki, TrustRoots::Platform] {
        let e = client(&w, TlsConfig::new().roots(roots), &srv.url)
            .get(&format!("{good_api}/api/v1/hello"))
            .await;
        let msg = e.unwrap_err().to_string();
        assert!(msg.contains("untrusted authority") && msg.contains(&good_api), "{roots:?}: {msg}");
    }
    let expired_api = api(&srv, Some(&pki.expired)).await;
    let msg = client(&w, trusted(), &srv.url)
        .get(&format!("{expired_api}/api/v1/hello"))
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("expired certificate") && msg.contains(&expired_api), "{msg}");
    let wrong_api = api(&srv, Some(&pki.wrong_host)).await;
    let msg = client(&w, trusted(), &srv.url)
        .get(&format!("{wrong_api}/api/v1/hello"))
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("for another host name"), "{msg}");

    // An API we trust that names a facilitator whose certificate has expired: nothing is paid.
    let bad_fac = facilitator(pki.dir.path(), Some(pki.expired.clone())).await;
    let api_of_bad_fac = api(&bad_fac, Some(&pki.good)).await;
    let w2 = funded_wallet(&bad_fac).await;
    let e = client(&w2, trusted(), &bad_fac.url)
        .get(&format!("{api_of_bad_fac}/api/v1/hello"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "facilitator_unavailable", "{e}");
    assert!(e.to_string().contains("expired certificate"), "{e}");
    assert_eq!(bad_fac.balance(&w2.address().to_checksum()).await.unwrap(), "1");

    // https is not spoken by a plain-http server.
    let plain = api(&srv, None).await.replace("http://", "https://");
    let msg =
        client(&w, trusted(), &srv.url).get(&format!("{plain}/api/v1/hello")).await.unwrap_err().to_string();
    assert!(msg.contains("does not speak TLS"), "{msg}");

    assert_eq!(srv.balance(&w.address().to_checksum()).await.unwrap(), "1", "nothing was paid");
    bad_fac.shutdown().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_only_refuses_a_plain_http_facilitator_and_api() {
    let pki = pki();
    let plain_fac = facilitator(pki.dir.path(), None).await;
    let https_api = api(&plain_fac, Some(&pki.good)).await;
    let w = funded_wallet(&plain_fac).await;
    let strict = TlsConfig::new().https_only(true).add_ca_pem(pki.ca_pem.as_bytes()).unwrap();

    let e = client(&w, strict.clone(), &plain_fac.url)
        .get(&format!("{https_api}/api/v1/hello"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "facilitator_untrusted", "{e}");
    assert!(e.to_string().contains(&plain_fac.url), "{e}");
    let http_api = api(&plain_fac, None).await;
    let msg = client(&w, strict, &plain_fac.url)
        .get(&format!("{http_api}/api/v1/hello"))
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("https only: refusing the plain-http URL"), "{msg}");
    assert_eq!(plain_fac.balance(&w.address().to_checksum()).await.unwrap(), "1", "nothing was paid");

    // Without https-only, the same pays.
    let lax = TlsConfig::new().add_ca_pem(pki.ca_pem.as_bytes()).unwrap();
    assert_eq!(
        client(&w, lax, &plain_fac.url).get(&format!("{https_api}/api/v1/hello")).await.unwrap().status(),
        200
    );
    plain_fac.shutdown().await;
}

#[test]
fn bad_ca_files_are_config_errors() {
    let e = TlsConfig::new().add_ca_pem(b"not a pem").unwrap_err();
    assert_eq!(e.code(), "config_invalid");
    let e = TlsConfig::new()
        .add_ca_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .unwrap_err();
    assert_eq!(e.code(), "config_invalid", "{e}");
    let e = TlsConfig::new().add_ca_file("/nonexistent/ca.pem").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The CLI

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn vlexivo(args: Vec<String>, env: Vec<(&'static str, String)>) -> Out {
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vlexivo"));
        cmd.args(&args);
        for v in vlexivo_core::envvars::ALL {
            cmd.env_remove(v.name);
            for a in v.aliases {
                cmd.env_remove(a);
            }
        }
        cmd.envs(env);
        let o = cmd.output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn one_clear_line(out: &Out) {
    let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got: {}", out.stderr);
    assert!(!out.stderr.contains("panicked") && !out.stderr.contains("backtrace"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_pays_over_https_and_refuses_what_it_should() {
    let pki = pki();
    let srv = facilitator(pki.dir.path(), Some(pki.good.clone())).await;
    let https_api = api(&srv, Some(&pki.good)).await;
    let w = funded_wallet(&srv).await;
    // The wallet and the facilitator to trust, by environment.
    let key = || vec![("VLX_WALLET_KEY", w.secret_hex()), ("VLX_FACILITATOR_URL", srv.url.clone())];
    let url = format!("{https_api}/api/v1/hello");
    let ca = pki.ca_file().display().to_string();

    let out = vlexivo(args(&["pay", &url, "--ca-file", &ca, "--https-only"]), key()).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(serde_json::from_str::<Value>(out.stdout.trim()).unwrap()["paid"], "0.001");
    // The CA from the environment, flag before the subcommand.
    let mut env = key();
    env.push(("VLX_CA_FILE", ca.clone()));
    let out = vlexivo(args(&["--tls-roots", "webpki", "pay", &url]), env).await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // 6: the API's certificate is not trusted; one line, nothing paid.
    let out = vlexivo(args(&["pay", &url]), key()).await;
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(out.stderr.contains("untrusted authority") && out.stderr.contains("--ca-file"), "{}", out.stderr);
    one_clear_line(&out);
    // --https-only and a plain-http API.
    let http_api = api(&srv, None).await;
    let out = vlexivo(args(&["pay", &format!("{http_api}/api/v1/hello"), "--https-only"]), key()).await;
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(out.stderr.contains("https only"), "{}", out.stderr);
    one_clear_line(&out);
    assert_eq!(srv.balance(&w.address().to_checksum()).await.unwrap(), "0.998");

    // 5: the facilitator's certificate is not trusted (a wallet command).
    let addr = w.address().to_checksum();
    let out = vlexivo(args(&["wallet", "balance", &addr, "--url", &srv.url]), vec![]).await;
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("untrusted authority"), "{}", out.stderr);
    one_clear_line(&out);
    let out = vlexivo(args(&["wallet", "balance", &addr, "--url", &srv.url, "--ca-file", &ca]), vec![]).await;
    assert_eq!((out.code, out.stdout.trim()), (0, "0.998 usd"), "{}", out.stderr);

    // 2: a CA file that is not one.
    let out = vlexivo(args(&["pay", &url, "--ca-file", &pki.good.key.display().to_string()]), key()).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("no PEM CERTIFICATE"), "{}", out.stderr);
    one_clear_line(&out);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_https_from_flags_and_refuse_a_bad_certificate() {
    let pki = pki();
    let db = pki.dir.path().join("serve.db");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vlexivo"))
        .args(["serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(&db)
        .env("VLX_TLS_CERT", &pki.good.cert)
        .env("VLX_TLS_KEY", &pki.good.key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    let url = line.trim().strip_prefix("VLEXIVO_URL=").unwrap_or_else(|| panic!("{line}")).to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let http = TlsConfig::new().add_ca_pem(pki.ca_pem.as_bytes()).unwrap().client().unwrap();
    let health: Value = http.get(format!("{url}/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    child.kill().unwrap();
    child.wait().unwrap();

    // A certificate and key that do not load: exit 2, one line naming the files.
    let out = vlexivo(
        args(&["serve", "--addr", "127.0.0.1:0", "--db", &db.display().to_string()]),
        vec![
            ("VLX_TLS_CERT", pki.good.key.display().to_string()),
            ("VLX_TLS_KEY", pki.good.key.display().to_string()),
        ],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("good-key.pem"), "{}", out.stderr);
    one_clear_line(&out);
}

/// The cost of TLS on a whole paid call (402, pay at the facilitator, retry with the proof),
/// loopback, connections kept alive by the client: HTTPS API + HTTPS facilitator against plain
/// HTTP for both, interleaved rounds in one process, p50 of each and their ratio per round.
/// `cargo test --release -p vlexivo-facilitator --test tls paid_call_latency_tls_vs_plain -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand with --release"]
async fn paid_call_latency_tls_vs_plain() {
    const ROUNDS: usize = 5;
    const CALLS: usize = 200;
    let pki = pki();
    let tls_fac = facilitator(pki.dir.path(), Some(pki.good.clone())).await;
    let plain_fac = facilitator(pki.dir.path(), None).await;
    let tls_api = api(&tls_fac, Some(&pki.good)).await;
    let plain_api = api(&plain_fac, None).await;
    let (tw, pw) = (Wallet::generate(&OsEntropy), Wallet::generate(&OsEntropy));
    tls_fac.top_up(&tw.address().to_checksum(), "1000").await.unwrap();
    plain_fac.top_up(&pw.address().to_checksum(), "1000").await.unwrap();
    let tls_client = client(&tw, TlsConfig::new().add_ca_pem(pki.ca_pem.as_bytes()).unwrap(), &tls_fac.url);
    let plain_client = client(&pw, TlsConfig::new(), &plain_fac.url);
    let p50 = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    async fn one(c: &VlexivoClient, url: &str) -> f64 {
        let t = std::time::Instant::now();
        let res = c.get(url).await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(vlexivo_client::receipt_of(&res).is_some(), "paid");
        t.elapsed().as_secs_f64() * 1e3
    }
    let (tls_url, plain_url) = (format!("{tls_api}/api/v1/hello"), format!("{plain_api}/api/v1/hello"));
    // Warm-up: connections, caches.
    for _ in 0..20 {
        one(&tls_client, &tls_url).await;
        one(&plain_client, &plain_url).await;
    }
    for round in 1..=ROUNDS {
        let (mut t, mut p) = (Vec::with_capacity(CALLS), Vec::with_capacity(CALLS));
        for i in 0..CALLS {
            // Alternate which goes first so neither always runs on a warmer cache.
            if i % 2 == 0 {
                t.push(one(&tls_client, &tls_url).await);
                p.push(one(&plain_client, &plain_url).await);
            } else {
                p.push(one(&plain_client, &plain_url).await);
                t.push(one(&tls_client, &tls_url).await);
            }
        }
        let (t50, p50) = (p50(t), p50(p));
        println!(
            "round {round}: paid call p50 TLS {t50:.3} ms, plain HTTP {p50:.3} ms, ratio {:.2}",
            t50 / p50
        );
    }
    tls_fac.shutdown().await;
    plain_fac.shutdown().await;
}
