//! Evidence a database breach cannot forge: signed checkpoints of the hash chain's head, kept
//! outside the facilitator, catch a ledger rewritten with a recomputed chain (which the plain
//! `vlexivo ledger verify` cannot), and show that a receipt's transaction is under them.

mod service_support;

use serde_json::{Value, json};
use service_support::*;
use std::path::Path;
use std::process::Command;
use vlexivo_facilitator::server::ledger::{Record, chain_hash};

/// `vlexivo ledger verify --db DB ARGS…` → (exit code, stdout + stderr).
fn verify(db: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(["ledger", "verify", "--db"]).arg(db).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Pay `GET path` once; returns the receipt's tx_hash.
async fn pay_once(
    c: &reqwest::Client,
    f: &Facilitator,
    secret: &str,
    wallet: &vlexivo_core::wallet::Wallet,
    path: &str,
) -> String {
    let pw = paywall(secret, &f.url);
    let (s, v) = pay(c, &f.url, &sign(&challenge(&pw, path, "0.01"), wallet)).await;
    assert_eq!(s, 200, "{v}");
    v["tx_hash"].as_str().unwrap().to_string()
}

/// What an attacker with write access does: change one payment's resource, then recompute
/// every hash from there on and fix the payment rows, so the chain is consistent again.
fn rewrite_from(db: &Path, seq: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let rows: Vec<(i64, String, String)> = conn
        .prepare("SELECT seq, record, prev_hash FROM transactions WHERE seq >= ?1 ORDER BY seq")
        .unwrap()
        .query_map([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev = rows[0].2.clone();
    for (s, record, _) in rows {
        let mut rec: Record = serde_json::from_str(&record).unwrap();
        if s == seq {
            assert_eq!(rec.kind, "payment");
            rec.resource = Some("GET /free".into());
            conn.execute("UPDATE payments SET resource = 'GET /free' WHERE tx_seq = ?1", [s]).unwrap();
        }
        let record = serde_json::to_string(&rec).unwrap();
        let hash = chain_hash(&prev, &record);
        conn.execute(
            "UPDATE transactions SET record = ?1, prev_hash = ?2, tx_hash = ?3 WHERE seq = ?4",
            rusqlite::params![record, prev, hash, s],
        )
        .unwrap();
        conn.execute("UPDATE payments SET tx_hash = ?1 WHERE tx_seq = ?2", rusqlite::params![hash, s])
            .unwrap();
        prev = hash;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_checkpoint_catches_a_rewritten_chain() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    let mut f = Facilitator::start(&db, &[]);
    let c = http();

    // An empty ledger: a checkpoint with no heads, which any later ledger satisfies.
    let (s, empty) = get(&c, &format!("{}/v1/ledger/checkpoint", f.url)).await;
    assert_eq!(s, 200, "{empty}");
    assert_eq!(empty["heads"], json!([]));

    let provider = create_provider(&c, &f.url, json!({})).await;
    let wallet = wallet();
    assert_eq!(top_up(&c, &f.url, &wallet, "1").await.0, 200);
    let first = pay_once(&c, &f, &provider.api_secret, &wallet, "/a").await;
    let second = pay_once(&c, &f, &provider.api_secret, &wallet, "/b").await;

    // The provider keeps a checkpoint (and the JWKS) outside the facilitator.
    let (s, cp) = get(&c, &format!("{}/v1/ledger/checkpoint", f.url)).await;
    assert_eq!(s, 200, "{cp}");
    assert_eq!(cp["heads"], json!([{"seq": 3, "hash": second}]), "{cp}");
    assert_eq!(cp["iss"], f.url.as_str());
    let (_, jwks) = get(&c, &format!("{}/.well-known/jwks.json", f.url)).await;
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == cp["kid"]), "{jwks} {cp}");
    let kept = dir.path().join("checkpoint.json");
    let kept_jwks = dir.path().join("jwks.json");
    let kept_empty = dir.path().join("empty.json");
    std::fs::write(&kept, cp.to_string()).unwrap();
    std::fs::write(&kept_jwks, jwks.to_string()).unwrap();
    std::fs::write(&kept_empty, empty["checkpoint"].as_str().unwrap()).unwrap();
    let after = pay_once(&c, &f, &provider.api_secret, &wallet, "/c").await;
    assert_eq!(f.terminate(), Some(0));

    let (kept, kept_jwks, kept_empty) =
        (kept.to_str().unwrap(), kept_jwks.to_str().unwrap(), kept_empty.to_str().unwrap());
    // The intact ledger: the heads are there; a receipt before the checkpoint is under it, one
    // paid after it is in the ledger but not under it.
    let (code, out) = verify(&db, &["--checkpoint", kept, "--jwks", kept_jwks, "--tx", &first]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("its 1 head(s) are in the ledger unchanged")
            && out.contains("seq 2, under the checkpoint"),
        "{out}"
    );
    let (code, out) = verify(&db, &["--checkpoint", kept, "--tx", &after]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not under the checkpoint (recorded after it)"), "{out}");
    let (code, out) = verify(&db, &["--checkpoint", kept_empty, "--jwks", kept_jwks]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&db, &["--tx", "0xfeed"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("transaction 0xfeed is not in the ledger"), "{out}");

    // Rewritten before the head with the chain recomputed: the plain check cannot tell ...
    rewrite_from(&db, 2);
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 0, "the rewrite keeps the chain consistent: {out}");
    // ... the kept checkpoint can.
    let (code, out) = verify(&db, &["--checkpoint", kept, "--jwks", kept_jwks]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("transaction 3: hash")
            && out.contains("the ledger was rewritten at or before this transaction"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1, "one message, no stack trace: {out}");
    let (code, out) = verify(&db, &["--checkpoint", kept, "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(
        out.lines().take_while(|l| !l.starts_with("ledger")).collect::<String>().as_str(),
    )
    .unwrap();
    assert_eq!(v["ok"], false);

    // The newest transactions removed and the balances recomputed: consistent again, but the
    // checkpoint's head is gone.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "DELETE FROM entries WHERE tx_seq >= 3; DELETE FROM payments WHERE tx_seq >= 3; \
         DELETE FROM transactions WHERE seq >= 3; \
         UPDATE accounts SET balance = (SELECT coalesce(sum(amount), 0) FROM entries WHERE account = accounts.id);",
    )
    .unwrap();
    drop(conn);
    let (code, out) = verify(&db, &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = verify(&db, &["--checkpoint", kept, "--jwks", kept_jwks]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("transaction 3: in the checkpoint but not in the ledger (its chain ends at 2)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_from_another_key_or_edited_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (db_a, db_b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let a = Facilitator::start(&db_a, &[]);
    let b = Facilitator::start(&db_b, &[]);
    let c = http();
    let (_, cp_b) = get(&c, &format!("{}/v1/ledger/checkpoint", b.url)).await;
    let (_, jwks_a) = get(&c, &format!("{}/.well-known/jwks.json", a.url)).await;
    drop((a, b));
    let file = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let jwks = file("jwks-a.json", jwks_a.to_string());
    // Another facilitator's checkpoint, checked against A's kept JWKS and against A's database.
    let other = file("b.json", cp_b.to_string());
    let (code, out) = verify(&db_a, &["--checkpoint", &other, "--jwks", &jwks]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not among the trusted keys"), "{out}");
    let (code, out) = verify(&db_a, &["--checkpoint", &other]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not among the trusted keys"), "{out}");
    // B's checkpoint with its heads edited: the signature no longer verifies under B's key.
    let jws = cp_b["checkpoint"].as_str().unwrap();
    let parts: Vec<&str> = jws.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["heads"] = json!([{"seq": 9, "hash": format!("0x{}", "00".repeat(32))}]);
    let edited = file("edited.json", format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]));
    let (code, out) = verify(&db_b, &["--checkpoint", &edited]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature does not verify"), "{out}");
    let junk = file("junk.json", "{\"heads\": []}".into());
    let (code, out) = verify(&db_b, &["--checkpoint", &junk]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("not a Vlexivo checkpoint"), "{out}");
}

/// On PostgreSQL every facilitator writes a chain (stream) of its own: the checkpoint signs each
/// stream's head, and a stream rewritten with its hashes recomputed fails the kept checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_cover_every_postgres_stream() {
    let pg = vlexivo_testkit::Server::postgres();
    let url = pg.database("evidence");
    let dir = tempfile::tempdir().unwrap();
    let fs: Vec<Facilitator> = (0..2).map(|_| Facilitator::start_pg(&url, dir.path(), &[])).collect();
    let c = http();
    let provider = create_provider(&c, &fs[0].url, json!({})).await;
    let wallet = wallet();
    assert_eq!(top_up(&c, &fs[1].url, &wallet, "1").await.0, 200);
    for (i, f) in fs.iter().enumerate() {
        pay_once(&c, f, &provider.api_secret, &wallet, &format!("/p{i}")).await;
    }
    let (s, cp) = get(&c, &format!("{}/v1/ledger/checkpoint", fs[1].url)).await;
    assert_eq!(s, 200, "{cp}");
    let heads = cp["heads"].as_array().unwrap();
    assert_eq!(heads.len(), 2, "one head per stream: {cp}");
    assert!(heads.iter().all(|h| h["stream"].is_i64() && h["seq"].as_i64().unwrap() >= 1), "{cp}");
    drop(fs);
    let kept = dir.path().join("cp.json");
    std::fs::write(&kept, cp.to_string()).unwrap();
    let verify_pg = |args: &[&str]| {
        let out = Command::new(BIN).args(["ledger", "verify", "--db", &url]).args(args).output().unwrap();
        (
            out.status.code(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (code, out) = verify_pg(&["--checkpoint", kept.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("its 2 head(s) are in the ledger unchanged"), "{out}");

    // Rewrite one stream's first payment (a new resource), every later hash recomputed.
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([url.as_str(), "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let target = psql(
        "SELECT stream || ' ' || seq FROM vlexivo.transactions WHERE kind = 'payment' ORDER BY stream, seq LIMIT 1",
    );
    let (stream, seq): (i64, i64) = {
        let mut it = target.split(' ').map(|x| x.parse().unwrap());
        (it.next().unwrap(), it.next().unwrap())
    };
    let rows = psql(&format!(
        "SELECT seq || '|' || prev_hash || '|' || record FROM vlexivo.transactions WHERE stream = {stream} AND seq >= {seq} ORDER BY seq"
    ));
    let mut prev: Option<String> = None;
    for line in rows.lines() {
        let mut parts = line.splitn(3, '|');
        let (s, stored_prev, record) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let mut rec: Record = serde_json::from_str(record).unwrap();
        if s == seq.to_string() {
            rec.resource = Some("GET /free".into());
        }
        let record = serde_json::to_string(&rec).unwrap();
        let p = prev.clone().unwrap_or_else(|| stored_prev.to_string());
        let hash = chain_hash(&p, &record);
        let q = |t: &str| t.replace('\'', "''");
        psql(&format!(
            "BEGIN; UPDATE vlexivo.transactions SET record = '{}', prev_hash = '{p}', tx_hash = '{hash}' WHERE stream = {stream} AND seq = {s}; \
             UPDATE vlexivo.payments SET tx_hash = '{hash}', resource = '{}' WHERE stream = {stream} AND tx_seq = {s}; COMMIT;",
            q(&record),
            q(rec.resource.as_deref().unwrap_or_default())
        ));
        prev = Some(hash);
    }
    let (code, out) = verify_pg(&[]);
    assert_eq!(code, Some(0), "the rewrite keeps every chain consistent: {out}");
    let (code, out) = verify_pg(&["--checkpoint", kept.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(&format!("stream {stream} transaction")) && out.contains("rewritten"), "{out}");
}
