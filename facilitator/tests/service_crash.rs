//! Durability: `kill -9` the facilitator in the middle of a payment load, restart it on the same
//! database, and check that every acknowledged payment is there, nothing was paid twice, the
//! money adds up and `vlexivo ledger verify` passes (and catches a tampered row).

mod service_support;

use parking_lot::Mutex;
use serde_json::{Value, json};
use service_support::*;
use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use vlexivo_core::payment::PaymentRequest;

const PAYMENTS: usize = 400;
const WORKERS: usize = 16;
/// Kill once this many payments have been acknowledged.
const KILL_AFTER: usize = 120;

struct Acked {
    req: PaymentRequest,
    nonce: String,
    token: String,
    tx_hash: String,
}

fn ledger_verify(db: &std::path::Path) -> (i32, String) {
    let out = Command::new(BIN).args(["ledger", "verify", "--db"]).arg(db).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_no_acknowledged_payment() {
    kill_9_mid_load(&[]).await
}

/// `--synchronous normal` acknowledges before the fsync: still safe against a killed process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_with_synchronous_normal() {
    kill_9_mid_load(&["--synchronous", "normal"]).await
}

async fn kill_9_mid_load(opts: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    let mut f = Facilitator::start(&db, opts);
    let (c, u) = (http(), f.url.clone());
    let p = create_provider(&c, &u, json!({})).await;
    let pw = paywall(&p.api_secret, &u);
    let w = wallet();
    let (s, _) = top_up(&c, &u, &w, "100").await;
    assert_eq!(s, 200);

    // Signed up front so the load is only HTTP and the facilitator.
    let reqs: Vec<PaymentRequest> =
        (0..PAYMENTS).map(|i| sign(&challenge(&pw, &format!("/r/{i}"), "0.001"), &w)).collect();
    let queue = Arc::new(Mutex::new(reqs.clone()));
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let failed = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (c, u, queue, acked, failed, killed) =
                (c.clone(), u.clone(), queue.clone(), acked.clone(), failed.clone(), killed.clone());
            tokio::spawn(async move {
                loop {
                    let Some(req) = queue.lock().pop() else { return };
                    let sent = c.post(format!("{u}/v1/payments")).json(&req).send().await;
                    let ok = match sent {
                        Ok(r) if r.status().as_u16() == 200 => r.json::<Value>().await.ok(),
                        Ok(r) => {
                            assert!(killed.load(Ordering::SeqCst), "refused before the kill: {}", r.status());
                            None
                        }
                        Err(_) => None,
                    };
                    match ok {
                        Some(v) => {
                            assert_eq!(v["replayed"], false);
                            acked.lock().push(Acked {
                                nonce: v["nonce"].as_str().unwrap().into(),
                                token: v["token"].as_str().unwrap().into(),
                                tx_hash: v["tx_hash"].as_str().unwrap().into(),
                                req,
                            });
                        }
                        None => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            })
        })
        .collect();

    // Wait for enough acknowledgements, then SIGKILL with requests in flight.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.lock().len() < KILL_AFTER {
        assert!(std::time::Instant::now() < deadline, "load too slow");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    killed.store(true, Ordering::SeqCst);
    f.kill9();
    for wk in workers {
        wk.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock());
    let n_acked = acked.len();
    assert!(n_acked >= KILL_AFTER);
    assert!(n_acked < PAYMENTS, "the kill came after everything was paid; nothing was in flight");
    assert!(failed.load(Ordering::SeqCst) > 0);

    // Restart on the same file, on another port but under the same public URL: the one the
    // challenges name.
    let restart_opts = [opts, &["--public-url", u.as_str()]].concat();
    let mut f = Facilitator::start(&db, &restart_opts);
    let u = f.url.clone();
    let (s, list) = get_authed(&c, &format!("{u}/v1/providers/me/payments?limit=1000"), &p.api_secret).await;
    assert_eq!(s, 200, "{list}");
    let rows = list["payments"].as_array().unwrap();
    let stored: HashSet<&str> = rows.iter().map(|r| r["nonce"].as_str().unwrap()).collect();
    assert_eq!(stored.len(), rows.len(), "a challenge was paid twice");
    for a in &acked {
        assert!(stored.contains(a.nonce.as_str()), "acknowledged payment {} lost", a.nonce);
        let row = rows.iter().find(|r| r["nonce"] == a.nonce.as_str()).unwrap();
        assert_eq!(row["tx_hash"], a.tx_hash.as_str());
    }
    // Payments committed but not acknowledged (in flight at the kill) may exist; never more.
    let paid = rows.len();
    eprintln!("acknowledged {n_acked}, stored {paid}, failed at the kill {}", failed.load(Ordering::SeqCst));
    assert!(paid >= n_acked && paid <= PAYMENTS);
    let total_atomic = paid as u64 * 1000;
    let (s, me) = get_authed(&c, &format!("{u}/v1/providers/me"), &p.api_secret).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["revenue"]["count"].as_u64(), Some(paid as u64));
    assert_eq!(me["revenue"]["total"], fmt_usd(total_atomic));
    assert_eq!(balance(&c, &u, &w).await, fmt_usd(100_000_000 - total_atomic));

    // Paying an acknowledged challenge again after the restart: the same token, no debit.
    for a in acked.iter().take(20) {
        let (s, v) = pay(&c, &u, &a.req).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["replayed"], true);
        assert_eq!(v["token"], a.token.as_str());
    }
    // Finish the rest of the load: each challenge ends up paid exactly once.
    let mut fresh = 0;
    for r in &reqs {
        let (s, v) = pay(&c, &u, r).await;
        assert_eq!(s, 200, "{v}");
        if v["replayed"] == false {
            fresh += 1;
        }
    }
    assert_eq!(paid + fresh, PAYMENTS);
    assert_eq!(balance(&c, &u, &w).await, fmt_usd(100_000_000 - PAYMENTS as u64 * 1000));

    // Verify while running (a consistent snapshot), then after a clean SIGTERM.
    let (code, out) = ledger_verify(&db);
    assert_eq!(code, 0, "{out}");
    assert_eq!(f.terminate(), Some(0), "{}", f.log());
    let (code, out) = ledger_verify(&db);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{} payments, 1 top-ups", PAYMENTS)), "{out}");

    // Tampering with one payment row is caught and named.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let seq: i64 = conn
        .query_row("SELECT tx_seq FROM payments ORDER BY tx_seq LIMIT 1 OFFSET 7", [], |r| r.get(0))
        .unwrap();
    conn.execute("UPDATE payments SET amount = 1 WHERE tx_seq = ?1", [seq]).unwrap();
    drop(conn);
    let (code, out) = ledger_verify(&db);
    assert_ne!(code, 0);
    assert!(out.contains(&format!("transaction {seq}:")), "{out}");
}

fn fmt_usd(atomic: u64) -> String {
    vlexivo_core::Money::from_atomic(atomic, vlexivo_core::Currency::Usd).unwrap().to_string()
}
