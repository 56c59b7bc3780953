//! `vlexivo pay` (the binary) against a real facilitator and a paid API: output and exit codes.

use serde_json::Value;
use std::sync::Arc;
use vlexivo_core::env::OsEntropy;
use vlexivo_core::paywall::{Paywall, PaywallConfig};
use vlexivo_core::store::MemoryStore;
use vlexivo_core::wallet::Wallet;
use vlexivo_facilitator::demo::paid_api;
use vlexivo_facilitator::server::{self, RunningServer, ServerConfig};

struct Env {
    srv: RunningServer,
    api: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let srv = server::spawn(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        db_path: dir.path().join("f.db"),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let p = srv.create_provider(None, None).await.unwrap();
    let mut cfg = PaywallConfig::new(p.api_secret);
    cfg.facilitator_url = srv.url.clone();
    let app = paid_api(Arc::new(Paywall::new(cfg).unwrap()), Arc::new(MemoryStore::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Env { srv, api, _dir: dir }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn vlexivo(args: Vec<String>, key: Option<String>) -> Out {
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vlexivo"));
        cmd.args(&args);
        for v in vlexivo_core::envvars::ALL {
            cmd.env_remove(v.name);
            for a in v.aliases {
                cmd.env_remove(a);
            }
        }
        if let Some(k) = key {
            cmd.env("VLX_WALLET_KEY", k);
        }
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

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

async fn wallet(env: &Env, balance: &str) -> (Wallet, String) {
    let w = Wallet::generate(&OsEntropy);
    if balance != "0" {
        env.srv.top_up(&w.address().to_checksum(), balance).await.unwrap();
    }
    let key = w.secret_hex();
    (w, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_prints_price_body_and_receipt() {
    let env = setup().await;
    let (w, key) = wallet(&env, "1").await;
    let url = format!("{}/api/v1/hello", env.api);
    // Only trusted facilitators are paid: without --facilitator (or VLEXIVO_FACILITATOR_URL)
    // this one, on a random port, is not.
    let out = vlexivo(s(&["pay", &url]), Some(key.clone())).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("not trusted"), "{}", out.stderr);
    assert_eq!(env.srv.balance(&w.address().to_checksum()).await.unwrap(), "1", "nothing paid");
    let out = vlexivo(s(&["pay", &url, "--facilitator", &env.srv.url]), Some(key.clone())).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(&format!("GET {}/api/v1/hello costs $0.001 usd", env.api)), "{}", out.stderr);
    assert!(out.stderr.contains("receipt tx=0x"), "{}", out.stderr);
    let body: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(body["message"], "hello, paid world");
    assert!(!out.stderr.contains(&key[2..]) && !out.stdout.contains(&key[2..]), "key never printed");

    // POST with a JSON body, --json output, key by flag.
    let url = format!("{}/api/v1/inference", env.api);
    let out = vlexivo(
        s(&[
            "pay",
            &url,
            "-d",
            r#"{"model":"large-v2","prompt":"hi"}"#,
            "--max-price",
            "0.05",
            "--json",
            "--wallet-key",
            &key,
            "--facilitator",
            &env.srv.url,
        ]),
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!((v["status"].as_u64(), v["price"].as_str()), (Some(200), Some("0.01")));
    assert_eq!(v["resource"], format!("POST {}/api/v1/inference", env.api));
    assert_eq!(v["receipt"]["payer"], w.address().to_checksum());
    assert_eq!(v["receipt"]["balance"], "0.989");
    assert_eq!(v["body"]["paid"], "0.01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pay_exit_codes() {
    let env = setup().await;
    let large = format!("{}/api/v1/inference", env.api);
    let body = r#"{"model":"large-v2"}"#;
    let fac = env.srv.url.clone();

    // 2: usage (no key, bad header, bad max price).
    let out = vlexivo(s(&["pay", &large]), None).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("VLX_WALLET_KEY"));
    let (_, key) = wallet(&env, "0.005").await;
    assert_eq!(vlexivo(s(&["pay", &large, "-H", "nocolon"]), Some(key.clone())).await.code, 2);
    assert_eq!(vlexivo(s(&["pay", &large, "--max-price", "abc"]), Some(key.clone())).await.code, 2);

    // 3: over the max price; nothing paid.
    let out = vlexivo(
        s(&["pay", &large, "-d", body, "--max-price", "0.005", "--facilitator", &fac]),
        Some(key.clone()),
    )
    .await;
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("above --max-price"), "{}", out.stderr);

    // 4: insufficient funds, with the amounts.
    let out =
        vlexivo(s(&["pay", &large, "-d", body, "--json", "--facilitator", &fac]), Some(key.clone())).await;
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        (v["error"].as_str(), v["required"].as_str(), v["balance"].as_str()),
        (Some("insufficient_funds"), Some("0.01"), Some("0.005"))
    );

    // --top-up covers it.
    let out =
        vlexivo(s(&["pay", &large, "-d", body, "--top-up", "1", "--facilitator", &fac]), Some(key.clone()))
            .await;
    assert_eq!(out.code, 0, "{}", out.stderr);

    // 5: facilitator unavailable (a paid API whose challenges name a dead facilitator, which
    // the client trusts).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let p = env.srv.create_provider(None, None).await.unwrap();
    let mut cfg = PaywallConfig::new(p.api_secret);
    cfg.facilitator_url = dead.clone();
    let app = paid_api(Arc::new(Paywall::new(cfg).unwrap()), Arc::new(MemoryStore::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let out =
        vlexivo(s(&["pay", &format!("{api}/api/v1/hello"), "--facilitator", &dead]), Some(key.clone())).await;
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("unavailable"));
    drop(dir);

    // 0 with no payment asked; 1 for an HTTP error answer.
    let out = vlexivo(s(&["pay", &format!("{}/healthz", env.srv.url)]), Some(key.clone())).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = vlexivo(s(&["pay", &format!("{}/nowhere", env.srv.url)]), Some(key)).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
}

/// The CLI reads the `VLX_*` names and, when those are unset, the names it read before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_names_and_their_aliases() {
    let env = setup().await;
    let (_, key) = wallet(&env, "1").await;
    let url = format!("{}/api/v1/hello", env.api);
    let run = |vars: Vec<(&'static str, String)>, args: Vec<String>| {
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vlexivo"));
            cmd.args(&args);
            for v in vlexivo_core::envvars::ALL {
                cmd.env_remove(v.name);
                for a in v.aliases {
                    cmd.env_remove(a);
                }
            }
            let o = cmd.envs(vars).output().unwrap();
            (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
        })
    };
    // The old names alone still work (the facilitator to trust included).
    let (code, err) = run(
        vec![("VLEXIVO_WALLET_KEY", key.clone()), ("VLEXIVO_FACILITATOR_URL", env.srv.url.clone())],
        s(&["pay", &url]),
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    // Both names, different values: refused before anything is sent, naming both, no values.
    let other = Wallet::generate(&OsEntropy).secret_hex();
    let (code, err) =
        run(vec![("VLX_WALLET_KEY", key.clone()), ("VLEXIVO_WALLET_KEY", other.clone())], s(&["pay", &url]))
            .await
            .unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("VLX_WALLET_KEY") && err.contains("VLEXIVO_WALLET_KEY"), "{err}");
    assert!(!err.contains(&key[2..]) && !err.contains(&other[2..]), "{err}");
    // The facilitator URL and the provider secret by their new names.
    let p = env.srv.create_provider(None, None).await.unwrap();
    let (code, err) = run(
        vec![("VLX_SECRET_KEY", p.api_secret.clone()), ("VLX_FACILITATOR_URL", env.srv.url.clone())],
        s(&["provider", "show"]),
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let (code, err) = run(
        vec![("VLEXIVO_API_SECRET", p.api_secret), ("VLEXIVO_FACILITATOR_URL", env.srv.url.clone())],
        s(&["provider", "show"]),
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
}
