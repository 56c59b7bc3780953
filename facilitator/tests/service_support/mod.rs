//! Shared by the service tests: run the real `vlexivo serve` binary on 127.0.0.1 with a
//! temporary database, and build signed payment requests.

#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vlexivo_core::challenge::Challenge;
use vlexivo_core::env::{Clock, OsEntropy, SystemClock};
use vlexivo_core::money::{Currency, Money};
use vlexivo_core::payment::{self, PaymentRequest};
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::wallet::Wallet;
use vlexivo_facilitator::server::types::ProviderCreated;

pub const BIN: &str = env!("CARGO_BIN_EXE_vlexivo");

/// A `vlexivo serve` child process; killed on drop.
pub struct Facilitator {
    pub child: Child,
    pub url: String,
    pub db: PathBuf,
    pub log: PathBuf,
    // Keeps the pipe open so the child never gets EPIPE on stdout.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Facilitator {
    pub fn start(db: &Path, extra: &[&str]) -> Self {
        let log = db.with_extension(format!("log{}", std::process::id() ^ rand_suffix()));
        Self::start_on(db.as_os_str(), db, log, extra)
    }

    /// A facilitator on a PostgreSQL database (`url`); its log goes to `dir`.
    pub fn start_pg(url: &str, dir: &Path, extra: &[&str]) -> Self {
        let log = dir.join(format!("facilitator-{}.log", rand_suffix()));
        Self::start_on(std::ffi::OsStr::new(url), dir, log, extra)
    }

    fn start_on(db_arg: &std::ffi::OsStr, db: &Path, log: PathBuf, extra: &[&str]) -> Self {
        let mut cmd = Command::new(BIN);
        // Only what the test passes: no VLX_* (or older) setting of the caller's shell.
        for v in vlexivo_core::envvars::ALL {
            cmd.env_remove(v.name);
            for a in v.aliases {
                cmd.env_remove(a);
            }
        }
        let mut child = cmd
            .args(["serve", "--addr", "127.0.0.1:0", "--db"])
            .arg(db_arg)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start vlexivo serve");
        let stdout = child.stdout.take().expect("piped stdout");
        // Read the ready line on a thread so a hung child fails the test instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let n = r.read_line(&mut line).unwrap_or(0);
            let _ = tx.send((n, line, r));
        });
        let (n, line, reader) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "vlexivo serve printed nothing within 30 s; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let url = line.trim().strip_prefix("VLEXIVO_URL=").map(str::to_string).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "unexpected first line {line:?} ({n} bytes); log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Facilitator { child, url, db: db.to_path_buf(), log, _stdout: reader }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (up to 20 s) for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.kill9();
        panic!("vlexivo serve did not exit within 20 s of SIGTERM");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Facilitator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u32 {
    let mut b = [0u8; 4];
    getrandom_fill(&mut b);
    u32::from_le_bytes(b)
}

fn getrandom_fill(b: &mut [u8]) {
    use vlexivo_core::env::Entropy;
    OsEntropy.fill(b)
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// (status, JSON body); the body is `Null` when it is not JSON.
async fn status_json(rq: reqwest::RequestBuilder) -> (u16, Value) {
    let r = rq.send().await.expect("request sent");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// (status, JSON body)
pub async fn get(c: &reqwest::Client, url: &str) -> (u16, Value) {
    status_json(c.get(url)).await
}

/// A provider's GET (`/v1/providers/me...`) with its API secret as the bearer token: (status,
/// JSON body).
pub async fn get_authed(c: &reqwest::Client, url: &str, secret: &str) -> (u16, Value) {
    status_json(c.get(url).bearer_auth(secret)).await
}

pub async fn post(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    status_json(c.post(url).json(body)).await
}

pub async fn post_raw(c: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, Value) {
    status_json(c.post(url).header("content-type", "application/json").body(body)).await
}

pub async fn create_provider(c: &reqwest::Client, base: &str, body: Value) -> ProviderCreated {
    let (s, v) = post(c, &format!("{base}/v1/providers"), &body).await;
    assert_eq!(s, 201, "{v}");
    serde_json::from_value(v).unwrap()
}

pub async fn top_up(c: &reqwest::Client, base: &str, wallet: &Wallet, amount: &str) -> (u16, Value) {
    post(
        c,
        &format!("{base}/v1/wallets/{}/topup", wallet.address()),
        &serde_json::json!({ "amount": amount }),
    )
    .await
}

pub async fn balance(c: &reqwest::Client, base: &str, wallet: &Wallet) -> String {
    let (s, v) = get(c, &format!("{base}/v1/wallets/{}", wallet.address())).await;
    assert_eq!(s, 200, "{v}");
    v["balance"].as_str().unwrap().to_string()
}

pub fn now() -> u64 {
    SystemClock.now()
}

pub fn paywall(secret: &str, facilitator: &str) -> Paywall {
    let mut cfg = PaywallConfig::new(secret);
    cfg.facilitator_url = facilitator.to_string();
    Paywall::new(cfg).unwrap()
}

/// A fresh encoded challenge for `GET path` at `price`, issued at `at`.
pub fn challenge_at(pw: &Paywall, path: &str, price: &str, at: u64) -> String {
    let price = Money::parse(price, Currency::Usd).unwrap();
    let r = pw
        .challenge(
            &RequestInfo::new("GET", "http", Some("127.0.0.1:8080"), path),
            &price,
            "per-call",
            at,
            &OsEntropy,
        )
        .unwrap();
    assert_eq!(r.status, 402);
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(vlexivo_core::headers::CHALLENGE))
        .map(|(_, v)| v.clone())
        .expect("challenge header")
}

pub fn challenge(pw: &Paywall, path: &str, price: &str) -> String {
    challenge_at(pw, path, price, now())
}

pub fn sign(encoded: &str, wallet: &Wallet) -> PaymentRequest {
    let c = Challenge::decode(encoded).unwrap();
    payment::sign(&c, encoded, wallet).unwrap()
}

pub async fn pay(c: &reqwest::Client, base: &str, req: &PaymentRequest) -> (u16, Value) {
    post(c, &format!("{base}/v1/payments"), &serde_json::to_value(req).unwrap()).await
}

pub fn wallet() -> Wallet {
    Wallet::generate(&OsEntropy)
}
