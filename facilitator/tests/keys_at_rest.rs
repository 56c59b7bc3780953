//! Keys at rest: with `VLX_MASTER_KEY` the database holds no key that mints a proof token,
//! forges a challenge or signs a checkpoint; the signing key rotates with a new `kid` while the
//! old one stays in the JWKS.

mod service_support;

use serde_json::{Value, json};
use service_support::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vlexivo_core::keys::ProviderKeys;

const MASTER: &str = "6b1f4e0c9a1d2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4";
const OTHER: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// `vlexivo serve` that must refuse to start: (exit code, stderr).
fn serve_refused(db: &Path, args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(BIN);
    for v in vlexivo_core::envvars::ALL {
        cmd.env_remove(v.name);
    }
    let mut child = cmd
        .args(["serve", "--addr", "127.0.0.1:0", "--db"])
        .arg(db)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("vlexivo serve started although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).to_string())
}

/// Every byte SQLite holds for this database (file and WAL).
fn db_bytes(db: &Path) -> Vec<u8> {
    let mut all = std::fs::read(db).unwrap();
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        all.extend(wal);
    }
    all
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn pays(f: &Facilitator, secret: &str) {
    let c = http();
    let w = wallet();
    assert_eq!(top_up(&c, &f.url, &w, "1").await.0, 200);
    let pw = paywall(secret, &f.url);
    let (s, v) = pay(&c, &f.url, &sign(&challenge(&pw, "/r", "0.01"), &w)).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_keys_need_the_master_key_and_plain_ones_get_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");

    // A sandbox database written without a master key: the derived keys are there in plain.
    let mut f = Facilitator::start(&db, &[]);
    let before = create_provider(&http(), &f.url, json!({})).await;
    pays(&f, &before.api_secret).await;
    assert_eq!(f.terminate(), Some(0));
    let plain = ProviderKeys::from_secret(&before.api_secret).unwrap();
    assert!(contains(&db_bytes(&db), &plain.token_hs256), "without a master key the key is stored plain");

    // Started with a master key: what was plain is sealed, and both providers work.
    let mut f = Facilitator::start(&db, &["--master-key", MASTER]);
    let after = create_provider(&http(), &f.url, json!({"token_alg": "EdDSA"})).await;
    pays(&f, &before.api_secret).await;
    pays(&f, &after.api_secret).await;
    assert_eq!(f.terminate(), Some(0));
    // Checkpoint the WAL into the file, then look for every derived key in every byte.
    rusqlite::Connection::open(&db).unwrap().execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    let bytes = db_bytes(&db);
    for secret in [&before.api_secret, &after.api_secret] {
        let k = ProviderKeys::from_secret(secret).unwrap();
        assert!(
            !contains(&bytes, &k.token_hs256) && !contains(&bytes, &k.challenge_mac),
            "a key is stored plain"
        );
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let lens: Vec<(i64, i64)> = conn
        .prepare("SELECT length(challenge_mac), length(token_hs256) FROM providers")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(lens, vec![(61, 61), (61, 61)]);
    let seed_len: i64 = conn
        .query_row("SELECT length(value) FROM meta WHERE key = 'ed25519_seed'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seed_len, 61, "the signing key is sealed too");
    drop(conn);

    // Without the master key, or with another one: one clear line, exit 2, nothing served.
    let (code, err) = serve_refused(&db, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sealed under a master key: set VLX_MASTER_KEY"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, err) = serve_refused(&db, &["--master-key", OTHER]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("does not open the keys in the database"), "{err}");
    assert!(!err.contains(OTHER) && !err.contains(MASTER), "{err}");
    let (code, err) = serve_refused(&db, &["--master-key", "not-a-key"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("64 hex digits") && !err.contains("not-a-key"), "{err}");

    // The right key again: everything still works.
    let f = Facilitator::start(&db, &["--master-key", MASTER]);
    pays(&f, &before.api_secret).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_live_providers_refuses_to_start_unsealed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    let mut f = Facilitator::start(&db, &[]);
    create_provider(&http(), &f.url, json!({})).await;
    assert_eq!(f.terminate(), Some(0));
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE providers SET mode = 'live'", []).unwrap();
    drop(conn);
    let (code, err) = serve_refused(&db, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("holds live providers, whose keys must be sealed at rest: set VLX_MASTER_KEY"),
        "{err}"
    );
    // With the master key it starts, and seals them.
    let f = Facilitator::start(&db, &["--master-key", MASTER]);
    drop(f);
}

/// `vlexivo keys rotate-signing-key`: a new kid signs tokens and checkpoints after a restart;
/// the old key stays in the JWKS, so what it signed still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_rotates_with_a_new_kid() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db");
    let c = http();
    let mut f = Facilitator::start(&db, &["--master-key", MASTER]);
    let p = create_provider(&c, &f.url, json!({"token_alg": "EdDSA"})).await;
    let w = wallet();
    assert_eq!(top_up(&c, &f.url, &w, "1").await.0, 200);
    let pw = paywall(&p.api_secret, &f.url);
    let (_, old_receipt) = pay(&c, &f.url, &sign(&challenge(&pw, "/r", "0.01"), &w)).await;
    let (_, old_jwks) = get(&c, &format!("{}/.well-known/jwks.json", f.url)).await;
    let old_kid = old_jwks["keys"][0]["kid"].as_str().unwrap().to_string();
    let (_, old_cp) = get(&c, &format!("{}/v1/ledger/checkpoint", f.url)).await;
    assert_eq!(old_cp["kid"], old_kid.as_str());
    assert_eq!(f.terminate(), Some(0));

    let rotate = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["keys", "rotate-signing-key", "--json", "--db"])
            .arg(&db)
            .args(args)
            .env_remove("VLX_MASTER_KEY")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // The sealed seed needs the master key to rotate.
    let (code, _, err) = rotate(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("set VLX_MASTER_KEY"), "{err}");
    let (code, out, err) = rotate(&["--master-key", MASTER]);
    assert_eq!(code, Some(0), "{err}");
    let rotated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rotated["retired_kid"], old_kid.as_str());
    let new_kid = rotated["kid"].as_str().unwrap().to_string();
    assert_ne!(new_kid, old_kid);

    let f = Facilitator::start(&db, &["--master-key", MASTER]);
    let (_, jwks) = get(&c, &format!("{}/.well-known/jwks.json", f.url)).await;
    let kids: Vec<&str> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, vec![new_kid.as_str(), old_kid.as_str()], "the new key first, the old one kept");
    // New tokens carry the new kid; a provider verifying with the JWKS accepts old and new.
    // (The restarted facilitator listens on another port: challenges must name that URL.)
    let pw = paywall(&p.api_secret, &f.url);
    let (s, receipt) = pay(&c, &f.url, &sign(&challenge(&pw, "/r", "0.01"), &w)).await;
    assert_eq!(s, 200, "{receipt}");
    let kid_of = |token: &str| -> String {
        use base64::Engine;
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice::<Value>(&h).unwrap()["kid"].as_str().unwrap().to_string()
    };
    assert_eq!(kid_of(receipt["token"].as_str().unwrap()), new_kid);
    assert_eq!(kid_of(old_receipt["token"].as_str().unwrap()), old_kid);
    let mut vc = vlexivo_core::token::VerifierConfig::new(&p.account, "sandbox");
    vc.jwks = Some(serde_json::from_value(jwks.clone()).unwrap());
    let verifier = vlexivo_core::token::TokenVerifier::new(vc).unwrap();
    for r in [&receipt, &old_receipt] {
        let t = r["token"].as_str().unwrap();
        verifier.verify_signature_and_time(t, now()).unwrap();
    }
    let (_, cp) = get(&c, &format!("{}/v1/ledger/checkpoint", f.url)).await;
    assert_eq!(cp["kid"], new_kid.as_str());
    drop(f);
    // Checkpoints from before the rotation still verify against the database's keys.
    let kept = dir.path().join("old-cp.json");
    std::fs::write(&kept, old_cp.to_string()).unwrap();
    let out = Command::new(BIN)
        .args(["ledger", "verify", "--db"])
        .arg(&db)
        .arg("--checkpoint")
        .arg(&kept)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// On PostgreSQL: facilitators sharing the database share the master key; the keys are sealed
/// there too, and a facilitator without the key refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_keys_are_sealed_for_every_facilitator() {
    let pg = vlexivo_testkit::Server::postgres();
    let url = pg.database("sealed");
    let dir = tempfile::tempdir().unwrap();
    let fs: Vec<Facilitator> =
        (0..2).map(|_| Facilitator::start_pg(&url, dir.path(), &["--master-key", MASTER])).collect();
    let p = create_provider(&http(), &fs[0].url, json!({})).await;
    // Onboarded by one, paid through the other (which reads the sealed row and opens it).
    pays(&fs[1], &p.api_secret).await;
    drop(fs);
    let psql = |sql: &str| {
        let out = Command::new("psql").args([url.as_str(), "-At", "-c", sql]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        psql("SELECT octet_length(challenge_mac) || ',' || octet_length(token_hs256) FROM vlexivo.providers"),
        "61,61"
    );
    assert_eq!(psql("SELECT octet_length(value) FROM vlexivo.meta WHERE key = 'ed25519_seed'"), "61");
    let k = ProviderKeys::from_secret(&p.api_secret).unwrap();
    let stored =
        psql("SELECT encode(challenge_mac, 'hex') || encode(token_hs256, 'hex') FROM vlexivo.providers");
    assert!(!stored.contains(&hex::encode(k.token_hs256)) && !stored.contains(&hex::encode(k.challenge_mac)));
    let mut cmd = Command::new(BIN);
    for v in vlexivo_core::envvars::ALL {
        cmd.env_remove(v.name);
    }
    let out = cmd.args(["serve", "--addr", "127.0.0.1:0", "--db", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set VLX_MASTER_KEY"));
}
