//! Generates `tests/vectors/*.json` from a seeded RNG and a fixed clock. The files are checked
//! in; the test command regenerates them and fails on any diff, and every language's test suite
//! reads them from that one place.
//!
//! `cargo run -p vlexivo-core --example gen_vectors [-- OUT_DIR]`

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::path::PathBuf;
use std::sync::Arc;
use vlexivo_core::challenge::{Challenge, ChallengeParams};
use vlexivo_core::client::{
    AutoTopUp, Call, Payer, PayerConfig, TrustedFacilitators, error_from_body, parse_payment_required,
};
use vlexivo_core::env::{Entropy, FixedClock, SeededEntropy, random_b64};
use vlexivo_core::keys::{Mode, ProviderKeys, generate_secret};
use vlexivo_core::paywall::{Paywall, PaywallConfig, RequestInfo};
use vlexivo_core::policy::SpendingPolicy;
use vlexivo_core::store::MemoryStore;
use vlexivo_core::token::{Ed25519Key, ProofClaims, SigningKey, TokenIssuer, jwks};
use vlexivo_core::wallet::{PaymentAuthorization, Wallet, recover_authorization};
use vlexivo_core::{Currency, Money, payment};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// The vectors' fixed clock: 2027-01-15T08:00:00Z.
const NOW: u64 = 1_800_000_000;
const FACILITATOR: &str = "http://127.0.0.1:4020";
/// The provider's configured origin in `paywall.json` and `challenge.json`.
const ORIGIN: &str = "https://api.example.com";
/// The origin of the API the payer calls in `client.json`.
const CLIENT_ORIGIN: &str = "http://127.0.0.1:8080";
#[allow(clippy::unusual_byte_groupings)] // grouped to read "seed 402"
const SEED: u64 = 0x5eed_402;

fn main() {
    let out: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors"));
    std::fs::create_dir_all(&out).expect("create vectors dir");
    let rng = SeededEntropy::new(SEED);
    let fx = Fixture::new(&rng);
    let files = [
        ("money.json", money()),
        ("challenge.json", challenges(&fx, &rng)),
        ("wallet.json", wallet(&fx, &rng)),
        ("payment.json", payments(&fx, &rng)),
        ("paywall.json", paywall(&fx, &rng)),
        ("client.json", client(&fx, &rng)),
        // Its own seed, so adding live cases never moves the other files' random draws.
        ("live.json", live(&SeededEntropy::new(SEED ^ 0x3009))),
    ];
    let mut total = 0;
    for (name, v) in files {
        total += v["cases"].as_array().map_or(0, Vec::len);
        let mut s = serde_json::to_string_pretty(&v).expect("json");
        s.push('\n');
        std::fs::write(out.join(name), s).expect("write vector file");
    }
    eprintln!("wrote {total} cases to {}", out.display());
}

/// Keys and parties shared by the files.
struct Fixture {
    secret: String,
    keys: ProviderKeys,
    other: ProviderKeys,
    ed: Ed25519Key,
    payer: Wallet,
    stranger: Wallet,
}

impl Fixture {
    fn new(rng: &SeededEntropy) -> Self {
        let secret = generate_secret(Mode::Sandbox, rng);
        let other_secret = generate_secret(Mode::Sandbox, rng);
        Self {
            keys: ProviderKeys::from_secret(&secret).unwrap(),
            other: ProviderKeys::from_secret(&other_secret).unwrap(),
            secret,
            ed: Ed25519Key::generate(rng),
            payer: Wallet::generate(rng),
            stranger: Wallet::generate(rng),
        }
    }

    /// A paywall naming `facilitator`, with no configured origin (it binds each request's).
    fn paywall_at(&self, facilitator: &str) -> Paywall {
        let mut cfg = PaywallConfig::new(&self.secret);
        cfg.facilitator_url = facilitator.into();
        Paywall::new(cfg).unwrap()
    }

    fn paywall(&self, with_jwks: bool, origin: &str) -> Paywall {
        let mut cfg = PaywallConfig::new(&self.secret);
        cfg.facilitator_url = FACILITATOR.into();
        cfg.origin = Some(origin.into());
        if with_jwks {
            cfg.jwks = Some(jwks(&[&self.ed]));
        }
        Paywall::new(cfg).unwrap()
    }

    fn claims(&self, rng: &dyn Entropy, amt: &str, res: &str) -> ProofClaims {
        let mut tx = [0u8; 32];
        rng.fill(&mut tx);
        ProofClaims {
            jti: random_b64(rng, 18),
            iss: FACILITATOR.into(),
            aud: self.keys.account.clone(),
            sub: self.payer.address().to_checksum(),
            txh: format!("0x{}", hex::encode(tx)),
            amt: amt.into(),
            cur: "usd".into(),
            res: res.into(),
            bdy: None,
            mode: "sandbox".into(),
            net: "sandbox".into(),
            iat: NOW - 10,
            exp: NOW - 10 + 300,
        }
    }

    fn hs(&self, c: &ProofClaims) -> String {
        TokenIssuer::new(SigningKey::Hs256(self.keys.token_hs256)).unwrap().issue(c).unwrap()
    }

    fn eddsa(&self, c: &ProofClaims) -> String {
        TokenIssuer::new(SigningKey::EdDsa(self.ed.clone())).unwrap().issue(c).unwrap()
    }
}

/// A JWT built by hand, for headers no honest issuer produces.
fn raw_jwt(header: &Value, claims: &ProofClaims, hmac_key: Option<&[u8]>) -> String {
    let signing_input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(header).unwrap()),
        B64.encode(serde_json::to_vec(claims).unwrap())
    );
    let sig = match hmac_key {
        Some(k) => {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(k).unwrap();
            m.update(signing_input.as_bytes());
            B64.encode(m.finalize().into_bytes())
        }
        None => String::new(),
    };
    format!("{signing_input}.{sig}")
}

fn err_or<T>(r: vlexivo_core::Result<T>, ok: impl FnOnce(T) -> Value) -> Value {
    match r {
        Ok(v) => ok(v),
        Err(e) => json!({ "error": e.code() }),
    }
}

// ---------------------------------------------------------------------------------------------

fn money() -> Value {
    let strings: &[(&str, &str, &str)] = &[
        ("one tenth of a cent", "0.001", "usd"),
        ("one hundredth of a cent", "0.0001", "usd"),
        ("trailing zeros", "10.00", "usd"),
        ("exact exponent form", "1e-3", "usd"),
        ("leading dot", ".5", "usd"),
        ("uppercase currency", "0.01", "USD"),
        ("zero", "0", "usd"),
        ("the maximum", "1000000", "usd"),
        ("negative", "-0.001", "usd"),
        ("NaN", "NaN", "usd"),
        ("Infinity", "Infinity", "usd"),
        ("negative infinity", "-inf", "usd"),
        ("too many decimals", "0.0000001", "usd"),
        ("exponent losing precision", "1e-7", "usd"),
        ("above the maximum", "1000000.01", "usd"),
        ("huge exponent", "1e400", "usd"),
        ("words", "abc", "usd"),
        ("empty", "", "usd"),
        ("two dots", "1.2.3", "usd"),
        ("leading space", " 1", "usd"),
        ("hex", "0x10", "usd"),
        ("unsupported currency", "1", "eur"),
        ("overlong string", "0.00000000000000000000000000000000000000001", "usd"),
        ("a point without digits after it", "5.", "usd"),
        ("negative beyond the maximum (negative wins)", "-.1E10", "usd"),
        ("negative with a huge exponent", "-1e99999", "usd"),
    ];
    let mut cases: Vec<Value> = strings
        .iter()
        .map(|(name, input, cur)| {
            let r = Currency::parse(cur).and_then(|c| Money::parse(input, c));
            json!({
                "name": name, "input": input, "currency": cur,
                "expect": err_or(r, |m| json!({ "amount": m.to_string(), "atomic": m.to_atomic().to_string() })),
            })
        })
        .collect();
    // Numbers (JS number, Python float): read through the shortest round-trip form.
    for (name, input) in [
        ("float 0.001", 0.001f64),
        ("float 0.0001", 0.0001),
        ("float 0.1+0.2", 0.1 + 0.2),
        ("float 1e-7", 1e-7),
        ("float negative", -0.5),
        ("float 90 days real-time", 0.0019 * 10.0),
    ] {
        let r = Money::from_f64(input, Currency::Usd);
        cases.push(json!({
            "name": name, "input": input, "currency": "usd",
            "expect": err_or(r, |m| json!({ "amount": m.to_string(), "atomic": m.to_atomic().to_string() })),
        }));
    }
    // Prices must be positive.
    let r = Money::parse("0", Currency::Usd).and_then(Money::positive);
    cases.push(json!({ "name": "zero price", "input": "0", "currency": "usd", "positive": true,
        "expect": err_or(r, |_| unreachable!()) }));
    json!({
        "kind": "money",
        "description": "Parse an amount (string: Money::parse; JSON number: Money::from_f64). With \"positive\": true the amount must also be > 0. expect: {amount, atomic} or {error}.",
        "cases": cases,
    })
}

fn challenges(fx: &Fixture, rng: &SeededEntropy) -> Value {
    let price = Money::parse("0.001", Currency::Usd).unwrap();
    let params = ChallengeParams {
        price: &price,
        scope: "per-call",
        method: "POST",
        origin: ORIGIN,
        path: "/api/v1/inference",
        body_sha256: None,
        account: &fx.keys.account,
        facilitator: FACILITATOR,
        mode: "sandbox",
        network: "sandbox",
        live: None,
        payer: None,
        ttl_secs: 300,
    };
    let good = Challenge::create(&params, &fx.keys.challenge_mac, NOW, rng).unwrap();
    let reencode = |f: &dyn Fn(&mut Value)| {
        let mut v = serde_json::to_value(&good).unwrap();
        f(&mut v);
        B64.encode(serde_json::to_vec(&v).unwrap())
    };
    let other_key = Challenge::create(&params, &fx.other.challenge_mac, NOW, rng).unwrap();
    // Pricing by payer: a challenge priced for the payer its request hinted names it. Its own
    // seed, so these cases never move the other draws.
    let payer = fx.payer.address().to_checksum();
    let bound = Challenge::create(
        &ChallengeParams { payer: Some(&payer), ..params.clone() },
        &fx.keys.challenge_mac,
        NOW,
        &SeededEntropy::new(SEED ^ 0x1402),
    )
    .unwrap();
    let rebound = |f: &dyn Fn(&mut Value)| {
        let mut v = serde_json::to_value(&bound).unwrap();
        f(&mut v);
        B64.encode(serde_json::to_vec(&v).unwrap())
    };
    let mut cases = vec![
        ("valid", good.encode(), NOW + 10),
        ("valid at expiry", good.encode(), NOW + 300),
        ("expired", good.encode(), NOW + 301),
        ("lowered amount", reencode(&|v| v["amount"] = json!("0.0001")), NOW),
        ("moved to another route", reencode(&|v| v["path"] = json!("/api/v1/free")), NOW),
        ("relayed to another origin", reencode(&|v| v["origin"] = json!("https://evil.example")), NOW),
        ("origin not in normal form", reencode(&|v| v["origin"] = json!("HTTPS://api.example.com:443")), NOW),
        (
            "no origin",
            reencode(&|v| {
                v.as_object_mut().unwrap().remove("origin");
            }),
            NOW,
        ),
        ("moved to another account", reencode(&|v| v["account"] = json!(fx.other.account)), NOW),
        ("extended expiry", reencode(&|v| v["exp"] = json!(NOW + 86_400)), NOW),
        ("MAC under another provider's key", other_key.encode(), NOW),
        ("truncated MAC", reencode(&|v| v["mac"] = json!("AAAA")), NOW),
        ("unknown field", reencode(&|v| v["extra"] = json!(1)), NOW),
        (
            "missing MAC",
            reencode(&|v| {
                v.as_object_mut().unwrap().remove("mac");
            }),
            NOW,
        ),
        ("version 2", reencode(&|v| v["v"] = json!(2)), NOW),
        ("short nonce", reencode(&|v| v["nonce"] = json!("abc")), NOW),
        ("negative amount", reencode(&|v| v["amount"] = json!("-0.001")), NOW),
        ("float amount", reencode(&|v| v["amount"] = json!(0.001)), NOW),
        ("not base64url", "***not-base64***".to_string(), NOW),
        ("base64 of non-JSON", B64.encode("hello"), NOW),
        ("oversized", "A".repeat(5000), NOW),
        ("priced for a payer", bound.encode(), NOW),
        ("payer swapped for another wallet", rebound(&|v| v["payer"] = json!(fx.stranger.address().to_checksum())), NOW),
        (
            "payer removed",
            rebound(&|v| {
                v.as_object_mut().unwrap().remove("payer");
            }),
            NOW,
        ),
        ("payer not in EIP-55 form", rebound(&|v| v["payer"] = json!(payer.to_ascii_lowercase())), NOW),
        ("payer not an address", rebound(&|v| v["payer"] = json!("0x1234")), NOW),
    ]
    .into_iter()
    .map(|(name, encoded, now)| {
        let decoded = Challenge::decode(&encoded);
        let (decode, verify, fields) = match &decoded {
            Err(e) => (json!(e.code()), Value::Null, Value::Null),
            Ok(c) => (
                json!("ok"),
                json!(match c.verify(&fx.keys.challenge_mac, now, 0) {
                    Ok(()) => "ok",
                    Err(e) => e.code(),
                }),
                {
                    let mut f = json!({ "amount": c.amount, "currency": c.currency, "method": c.method, "origin": c.origin,
                        "path": c.path, "account": c.account, "nonce": c.nonce, "exp": c.exp });
                    if let Some(p) = &c.payer {
                        f["payer"] = json!(p);
                    }
                    f
                },
            ),
        };
        let mut expect = json!({ "decode": decode });
        if !verify.is_null() {
            expect["verify"] = verify;
            expect["fields"] = fields;
        }
        json!({ "name": name, "encoded": encoded, "now": now, "expect": expect })
    })
    .collect::<Vec<_>>();
    cases.truncate(64);
    json!({
        "kind": "challenge",
        "description": "Decode (Challenge::decode) then verify MAC and expiry with zero leeway under the key derived from api_secret (Challenge::verify). expect.decode: \"ok\" or an error code; expect.verify likewise when decoding succeeded. fields.payer: the payer a challenge priced for a payer names (only that wallet may pay it).",
        "api_secret": fx.secret,
        "account": fx.keys.account,
        "cases": cases,
    })
}

fn wallet(fx: &Fixture, rng: &SeededEntropy) -> Value {
    let mut cases = vec![];
    for w in [&fx.payer, &fx.stranger, &Wallet::generate(rng)] {
        cases.push(json!({ "name": "address of a key", "op": "address", "private_key": w.secret_hex(),
            "expect": { "address": w.address().to_checksum() } }));
    }
    for (name, key) in [
        ("key too short", "0x1234"),
        ("zero key", &*format!("0x{}", "0".repeat(64))),
        ("key above the curve order", &*format!("0x{}", "f".repeat(64))),
        ("not hex", "0xzz"),
    ] {
        cases.push(json!({ "name": name, "op": "address", "private_key": key,
            "expect": err_or(Wallet::from_hex(key), |w| json!({ "address": w.address().to_checksum() })) }));
    }
    let addr = fx.payer.address().to_checksum();
    for (name, input) in [
        ("checksummed", addr.clone()),
        ("lowercase", addr.to_lowercase()),
        ("bad checksum", flip_case(&addr)),
        ("19 bytes", addr[..40].to_string()),
    ] {
        cases.push(json!({ "name": format!("address parse: {name}"), "op": "parse_address", "input": input,
            "expect": err_or(vlexivo_core::wallet::Address::parse(&input), |a| json!({ "address": a.to_checksum() })) }));
    }
    let mut challenge = [0u8; 32];
    rng.fill(&mut challenge);
    let auth = PaymentAuthorization {
        challenge_hash: challenge,
        payee: fx.keys.account.clone(),
        amount_atomic: 1000,
        currency: "usd".into(),
        deadline: NOW + 300,
        chain_id: 0,
    };
    let auth_json = |a: &PaymentAuthorization| {
        json!({
        "challenge": format!("0x{}", hex::encode(a.challenge_hash)), "payee": a.payee,
        "amount": a.amount_atomic.to_string(), "currency": a.currency,
        "deadline": a.deadline, "chain_id": a.chain_id })
    };
    let sig = fx.payer.sign_authorization(&auth);
    cases.push(json!({ "name": "sign an authorization", "op": "sign", "private_key": fx.payer.secret_hex(),
        "authorization": auth_json(&auth),
        "expect": { "signing_hash": format!("0x{}", hex::encode(auth.signing_hash())), "signature": sig, "signer": addr } }));
    let mut higher = auth.clone();
    higher.amount_atomic = 10_000;
    let mut bad_v = sig.clone();
    bad_v.replace_range(bad_v.len() - 2.., "1d");
    let v = u8::from_str_radix(&sig[130..], 16).unwrap();
    let v01 = format!("{}{:02x}", &sig[..130], v - 27);
    for (name, a, s) in [
        ("recover", &auth, sig.clone()),
        ("amount changed after signing", &higher, sig.clone()),
        ("v = 29", &auth, bad_v),
        ("v = 0/1 instead of 27/28", &auth, v01),
        ("no 0x", &auth, sig[2..].to_string()),
        ("upper-case hex", &auth, format!("0x{}", sig[2..].to_uppercase())),
        ("truncated signature", &auth, sig[..100].to_string()),
        ("not hex", &auth, format!("0x{}", "g".repeat(130))),
    ] {
        let r = recover_authorization(a, &s);
        let expect = match r {
            Ok(signer) => json!({ "signer": signer.to_checksum() }),
            Err(e) => json!({ "error": e.code() }),
        };
        cases.push(
            json!({ "name": format!("recover: {name}"), "op": "recover", "authorization": auth_json(a),
            "signature": s, "expect": expect }),
        );
    }
    json!({
        "kind": "wallet",
        "description": "op address: Wallet::from_hex(private_key).address(). op parse_address: Address::parse. op sign: EIP-712 signing hash and RFC 6979 signature. op recover: recover_authorization; a changed field recovers another address (never the signer).",
        "cases": cases,
    })
}

fn flip_case(addr: &str) -> String {
    let mut out = String::from("0x");
    let mut flipped = false;
    for c in addr[2..].chars() {
        if !flipped && c.is_ascii_alphabetic() {
            flipped = true;
            out.push(if c.is_ascii_uppercase() { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() });
        } else {
            out.push(c);
        }
    }
    out
}

fn payments(fx: &Fixture, rng: &SeededEntropy) -> Value {
    let pw = fx.paywall(false, ORIGIN);
    let price = Money::parse("0.01", Currency::Usd).unwrap();
    let req = RequestInfo::new("POST", "https", Some("api.example.com"), "/api/v1/inference");
    let mk = || {
        let r = pw.challenge(&req, &price, "per-call", NOW, rng).unwrap();
        r.headers.iter().find(|(k, _)| *k == "Vlexivo-Challenge").unwrap().1.clone()
    };
    let signed = |enc: &str, w: &Wallet| {
        let c = Challenge::decode(enc).unwrap();
        payment::sign(&c, enc, w).unwrap()
    };
    let enc = mk();
    let good = signed(&enc, &fx.payer);
    let mut someone_else = good.clone();
    someone_else.payer = fx.stranger.address().to_checksum();
    let enc2 = mk();
    let mut swapped = signed(&enc2, &fx.payer);
    swapped.signature = good.signature.clone();
    let mut tampered = good.clone();
    let mut v: Value = serde_json::from_slice(&B64.decode(&enc).unwrap()).unwrap();
    v["amount"] = json!("0.0001");
    tampered.challenge = B64.encode(serde_json::to_vec(&v).unwrap());
    // A challenge priced for the payer's hint (its own seed: the other draws stay put).
    let hinted = fx.payer.address().to_checksum();
    let mut bound_req = req;
    bound_req.payer = Some(&hinted);
    let bound =
        pw.challenge(&bound_req, &price, "per-call", NOW, &SeededEntropy::new(SEED ^ 0x2402)).unwrap();
    let bound = &bound.headers.iter().find(|(k, _)| *k == "Vlexivo-Challenge").unwrap().1;
    let bound_by_payer = signed(bound, &fx.payer);
    let bound_by_stranger = signed(bound, &fx.stranger);
    let cases: Vec<Value> = [
        ("valid", good.clone(), NOW + 1),
        ("valid within the 5 s leeway", good.clone(), NOW + 305),
        ("expired challenge", good.clone(), NOW + 306),
        ("payer claims another wallet", someone_else, NOW),
        ("signature from another challenge", swapped, NOW),
        ("challenge amount lowered", tampered, NOW),
        ("priced for this payer", bound_by_payer, NOW),
        ("priced for another payer (a borrowed hint)", bound_by_stranger, NOW),
    ]
    .into_iter()
    .map(|(name, r, now)| {
        let result = payment::decode(&r).and_then(|c| payment::verify(&r, c, &fx.keys.challenge_mac, now));
        json!({ "name": name, "request": r, "now": now,
            "expect": err_or(result, |p| json!({ "payer": p.payer.to_checksum(), "amount": p.price.to_string() })) })
    })
    .collect();
    json!({
        "kind": "payment",
        "description": "What the facilitator checks before charging: payment::decode, then payment::verify with the challenge MAC key derived from api_secret at `now` (5 s leeway on expiry).",
        "api_secret": fx.secret,
        "cases": cases,
    })
}

fn paywall(fx: &Fixture, rng: &SeededEntropy) -> Value {
    const INF: &str = "POST https://api.example.com/api/v1/inference";
    let mut cases: Vec<Value> = vec![];
    let mut case = |name: &str, price: &str, jwks: bool, requests: Vec<Value>| {
        cases.push(
            json!({ "name": name, "price": price, "currency": "usd", "jwks": jwks, "requests": requests }),
        )
    };
    let req = |proof: Option<&str>| json!({ "method": "POST", "path": "/api/v1/inference", "proof": proof, "now": NOW });
    let at = |proof: &str, now: u64| json!({ "method": "POST", "path": "/api/v1/inference", "proof": proof, "now": now });

    let c = fx.claims(rng, "0.001", INF);
    let hs = fx.hs(&c);
    case("no proof", "0.001", false, vec![req(None)]);
    case("valid HS256", "0.001", false, vec![req(Some(&hs))]);
    let c2 = fx.claims(rng, "0.001", INF);
    case("valid EdDSA", "0.001", true, vec![req(Some(&fx.eddsa(&c2)))]);
    case("EdDSA without JWKS configured", "0.001", false, vec![req(Some(&fx.eddsa(&c2)))]);
    let c3 = fx.claims(rng, "0.001", INF);
    let t3 = fx.hs(&c3);
    case("replay", "0.001", false, vec![req(Some(&t3)), req(Some(&t3))]);
    let c4 = fx.claims(rng, "0.001", INF);
    let t4 = fx.hs(&c4);
    let mut failed = req(Some(&t4));
    failed["handler_status"] = json!(500);
    case("handler failure releases the nonce", "0.001", false, vec![failed, req(Some(&t4)), req(Some(&t4))]);
    let c5 = fx.claims(rng, "0.001", "POST https://api.example.com/api/v1/data");
    case("another route", "0.001", false, vec![req(Some(&fx.hs(&c5)))]);
    let c5o = fx.claims(rng, "0.001", "POST https://evil.example/api/v1/inference");
    case("another origin", "0.001", false, vec![req(Some(&fx.hs(&c5o)))]);
    let c5b = fx.claims(rng, "0.001", "POST /api/v1/inference");
    case("bound to no origin", "0.001", false, vec![req(Some(&fx.hs(&c5b)))]);
    let c6 = fx.claims(rng, "0.001", "GET https://api.example.com/api/v1/inference");
    case("another method", "0.001", false, vec![req(Some(&fx.hs(&c6)))]);
    let c7 = fx.claims(rng, "0.001", INF);
    case("lower amount than the price", "0.01", false, vec![req(Some(&fx.hs(&c7)))]);
    case("higher amount than the price", "0.0001", false, vec![req(Some(&fx.hs(&c7)))]);
    let mut c8 = fx.claims(rng, "0.001", INF);
    c8.cur = "eur".into();
    case("another currency", "0.001", false, vec![req(Some(&fx.hs(&c8)))]);
    let mut c9 = fx.claims(rng, "0.001", INF);
    c9.mode = "live".into();
    case("another mode", "0.001", false, vec![req(Some(&fx.hs(&c9)))]);
    let mut c10 = fx.claims(rng, "0.001", INF);
    c10.aud = fx.other.account.clone();
    case("EdDSA token for another provider", "0.001", true, vec![req(Some(&fx.eddsa(&c10)))]);
    let other_hs = TokenIssuer::new(SigningKey::Hs256(fx.other.token_hs256)).unwrap().issue(&c10).unwrap();
    case("HS256 token under another provider's key", "0.001", false, vec![req(Some(&other_hs))]);
    let c11 = fx.claims(rng, "0.001", INF);
    let t11 = fx.hs(&c11);
    case("expired", "0.001", false, vec![at(&t11, c11.exp + 31)]);
    case("within the 30 s leeway", "0.001", false, vec![at(&t11, c11.exp + 30)]);
    case("issued in the future", "0.001", false, vec![at(&t11, c11.iat - 31)]);
    let mut long = c11.clone();
    long.exp = long.iat + 10 * 365 * 86_400;
    case(
        "signed by the provider's key with a ten-year lifetime",
        "0.001",
        false,
        vec![req(Some(&fx.hs(&long)))],
    );
    let c12 = fx.claims(rng, "0.001", INF);
    case(
        "alg none",
        "0.001",
        true,
        vec![req(Some(&raw_jwt(&json!({"alg": "none", "typ": "vlexivo-proof+jwt"}), &c12, None)))],
    );
    case(
        "alg RS256",
        "0.001",
        true,
        vec![req(Some(&raw_jwt(
            &json!({"alg": "RS256", "typ": "vlexivo-proof+jwt"}),
            &c12,
            Some(&fx.keys.token_hs256),
        )))],
    );
    case(
        "alg HS512",
        "0.001",
        false,
        vec![req(Some(&raw_jwt(
            &json!({"alg": "HS512", "typ": "vlexivo-proof+jwt"}),
            &c12,
            Some(&fx.keys.token_hs256),
        )))],
    );
    // Confusion: HS256 keyed with the facilitator's public Ed25519 key.
    let confused =
        raw_jwt(&json!({"alg": "HS256", "typ": "vlexivo-proof+jwt"}), &c12, Some(&fx.ed.public_key()));
    case("HS256 keyed with the EdDSA public key", "0.001", true, vec![req(Some(&confused))]);
    let as_eddsa = raw_jwt(
        &json!({"alg": "EdDSA", "typ": "vlexivo-proof+jwt", "kid": fx.ed.kid()}),
        &c12,
        Some(&fx.keys.token_hs256),
    );
    case("EdDSA header over an HMAC signature", "0.001", true, vec![req(Some(&as_eddsa))]);
    case(
        "wrong typ",
        "0.001",
        false,
        vec![req(Some(&raw_jwt(&json!({"alg": "HS256", "typ": "JWT"}), &c12, Some(&fx.keys.token_hs256))))],
    );
    case(
        "missing typ",
        "0.001",
        false,
        vec![req(Some(&raw_jwt(&json!({"alg": "HS256"}), &c12, Some(&fx.keys.token_hs256))))],
    );
    let good = fx.hs(&c12);
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let mut claims_v: Value = serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
    claims_v["amt"] = json!("1");
    parts[1] = B64.encode(serde_json::to_vec(&claims_v).unwrap());
    case("payload tampered", "1", false, vec![req(Some(&parts.join(".")))]);
    case("two segments", "0.001", false, vec![req(Some(&good[..good.rfind('.').unwrap()]))]);
    case("garbage", "0.001", false, vec![req(Some("not.a.token!"))]);
    case("bad base64 payload", "0.001", false, vec![req(Some(&format!("{}.%%%.{}", parts[0], parts[2])))]);
    case("oversized proof header", "0.001", false, vec![req(Some(&"a".repeat(5000)))]);
    let c13 = fx.claims(rng, "0.001", "GET https://api.example.com/api/v1/data");
    let t13 = fx.hs(&c13);
    case(
        "query string is not part of the binding",
        "0.001",
        false,
        vec![
            json!({ "method": "GET", "path": "/api/v1/data?days=30&granularity=tick", "proof": t13, "now": NOW }),
        ],
    );

    // Run each case through the core paywall to record what it must answer.
    let entropy = SeededEntropy::new(1);
    for case in &mut cases {
        let pw = fx.paywall(case["jwks"].as_bool().unwrap(), ORIGIN);
        let store = MemoryStore::new();
        let price = Paywall::parse_price(case["price"].as_str().unwrap(), "usd").unwrap();
        for r in case["requests"].as_array_mut().unwrap() {
            // The origin is configured: the request's own Host (a test server's) plays no part.
            let info =
                RequestInfo::new(r["method"].as_str().unwrap(), "http", None, r["path"].as_str().unwrap());
            let now = r["now"].as_u64().unwrap();
            let expect = match pw.verify(r["proof"].as_str(), &info, &price, now, &store) {
                Ok(facts) => {
                    let status = r["handler_status"].as_u64().unwrap_or(200);
                    if status >= 500 {
                        pw.release(&facts, &store).unwrap();
                    }
                    json!({ "status": status, "payment": facts })
                }
                Err(e) => {
                    let rej = pw.reject(&e, &info, Some(&price), "per-call", now, &entropy);
                    json!({ "status": rej.status, "error": rej.code, "challenge": rej.status == 402 })
                }
            };
            r["expect"] = expect;
        }
    }
    json!({
        "kind": "paywall",
        "description": "A provider with api_secret and the configured origin (and, when a case says jwks: true, the facilitator's EdDSA keys) paywalls a route at `price`; proofs are bound to \"METHOD origin/path\". Run each case's requests in order against one fresh nonce store, each at its `now` (leeway 30 s). A request with handler_status >= 500 has its nonce released. expect: {status, payment} on success, or {status, error, challenge} where challenge says whether a fresh Vlexivo-Challenge is attached.",
        "api_secret": fx.secret,
        "account": fx.keys.account,
        "facilitator_url": FACILITATOR,
        "origin": ORIGIN,
        "jwks": jwks(&[&fx.ed]),
        "leeway_secs": 30,
        "cases": cases,
    })
}

fn client(fx: &Fixture, rng: &SeededEntropy) -> Value {
    // No configured origin: the challenge binds the request's own, as a test server's would.
    let pw = fx.paywall_at(FACILITATOR);
    let host = CLIENT_ORIGIN.strip_prefix("http://");
    let challenge = |method: &str, path: &str, price: &str| {
        let info = RequestInfo::new(method, "http", host, path);
        let price = Money::parse(price, Currency::Usd).unwrap();
        let rej = pw.challenge(&info, &price, "per-call", NOW, rng).unwrap();
        let enc = rej.headers.iter().find(|(k, _)| *k == "Vlexivo-Challenge").unwrap().1.clone();
        (enc, rej.body)
    };
    let (enc, body) = challenge("POST", "/api/v1/inference", "0.01");
    let url = "http://127.0.0.1:8080/api/v1/inference";
    let resp = |status: u16, header: bool, body: &str| {
        let headers = if header {
            json!([["vlexivo-challenge", enc], ["content-type", "application/json"]])
        } else {
            json!([["content-type", "application/json"]])
        };
        json!({ "status": status, "headers": headers, "body": body })
    };
    let trusted = json!({ "trusted": [FACILITATOR] });
    let with = |extra: Value| {
        let mut c = trusted.clone();
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        c
    };
    let cases_in = vec![
        ("402 with header and body", resp(402, true, &body), "POST", url, NOW, trusted.clone()),
        ("402 with body only", resp(402, false, &body), "POST", url, NOW, trusted.clone()),
        ("200 is not a payment request", resp(200, false, "{}"), "POST", url, NOW, trusted.clone()),
        (
            "402 from another scheme",
            resp(402, false, "{\"x402Version\":2,\"accepts\":[]}"),
            "POST",
            url,
            NOW,
            trusted.clone(),
        ),
        (
            "402 with a malformed challenge",
            json!({ "status": 402, "headers": [["vlexivo-challenge", "@@@"]], "body": "" }),
            "POST",
            url,
            NOW,
            trusted.clone(),
        ),
        (
            "challenge for another path",
            resp(402, true, &body),
            "POST",
            "http://127.0.0.1:8080/api/v1/other",
            NOW,
            trusted.clone(),
        ),
        ("challenge for another method", resp(402, true, &body), "GET", url, NOW, trusted.clone()),
        (
            "challenge relayed from another origin",
            resp(402, true, &body),
            "POST",
            "https://relay.example/api/v1/inference",
            NOW,
            trusted.clone(),
        ),
        ("expired challenge", resp(402, true, &body), "POST", url, NOW + 301, trusted.clone()),
        (
            "over the per-call cap",
            resp(402, true, &body),
            "POST",
            url,
            NOW,
            with(json!({ "max_per_call": "0.001" })),
        ),
        (
            "within the per-call cap",
            resp(402, true, &body),
            "POST",
            url,
            NOW,
            with(json!({ "max_per_call": "0.01" })),
        ),
        (
            "over the total cap",
            resp(402, true, &body),
            "POST",
            url,
            NOW,
            with(json!({ "max_total": "0.005" })),
        ),
        (
            "a facilitator the payer does not trust",
            resp(402, true, &body),
            "POST",
            url,
            NOW,
            json!({ "trusted": ["http://127.0.0.1:9999"] }),
        ),
    ];
    let mut cases: Vec<Value> = cases_in
        .into_iter()
        .map(|(name, response, method, url, now, config)| {
            let headers: Vec<(String, String)> = response["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h[0].as_str().unwrap().to_string(), h[1].as_str().unwrap().to_string()))
                .collect();
            let parsed = parse_payment_required(
                response["status"].as_u64().unwrap() as u16,
                headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                response["body"].as_str().unwrap().as_bytes(),
            );
            let payer = flow_payer(fx, &config, now);
            let expect = match parsed.and_then(|pr| payer.quote(&pr, method, url)) {
                Ok(q) => {
                    let body: Value = serde_json::from_str(&q.body).unwrap();
                    json!({ "price": q.price.to_string(), "currency": q.price.currency().code(),
                        "nonce": q.nonce, "pay_url": q.pay_url, "payment_request": body })
                }
                Err(e) => json!({ "error": e.code() }),
            };
            json!({ "name": name, "op": "quote", "response": response, "request": { "method": method, "url": url },
                    "now": now, "config": config, "expect": expect })
        })
        .collect();
    for (name, status, body) in [
        (
            "facilitator: insufficient funds",
            402,
            r#"{"error":"insufficient_funds","message":"insufficient funds","required":"0.01","balance":"0.004","currency":"usd"}"#,
        ),
        (
            "facilitator: signature invalid",
            401,
            r#"{"error":"signature_invalid","message":"signature is invalid"}"#,
        ),
        (
            "facilitator: unknown provider",
            404,
            r#"{"error":"provider_unknown","message":"unknown provider account"}"#,
        ),
        ("facilitator: not JSON", 502, "<html>bad gateway</html>"),
    ] {
        let e = error_from_body(status, body.as_bytes());
        let mut expect = json!({ "error": e.code() });
        if let vlexivo_core::Error::InsufficientFunds { required, balance, currency } = &e {
            expect["required"] = json!(required);
            expect["balance"] = json!(balance);
            expect["currency"] = json!(currency);
        }
        cases.push(json!({ "name": name, "op": "error_from_body", "status": status, "body": body, "expect": expect }));
    }
    cases.extend(flows(fx, &challenge));
    json!({
        "kind": "client",
        "description": "The payer's side. op quote: parse_payment_required(response), then quote the payment for request at now with the wallet private_key and the case's config (trusted facilitators, caps); the signature in payment_request is deterministic (RFC 6979); nothing stays reserved. op error_from_body: map a facilitator error body to a typed error. op flow: one payer (config, fixed clock at now) runs calls in order; each exchange feeds one input to the call and expects the step it returns (see README).",
        "private_key": fx.payer.secret_hex(),
        "cases": cases,
    })
}

/// A payer for a case's `config`, on a fixed clock.
fn flow_payer(fx: &Fixture, config: &Value, now: u64) -> Payer {
    let m = |k: &str| config[k].as_str().map(|s| Money::parse(s, Currency::Usd).unwrap());
    let trusted: Vec<String> =
        config["trusted"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect();
    let auto = config.get("auto_top_up").map(|a| {
        AutoTopUp::new(a["trigger_balance"].as_str().unwrap(), a["top_up_amount"].as_str().unwrap()).unwrap()
    });
    let config = PayerConfig {
        policy: SpendingPolicy {
            max_per_call: m("max_per_call"),
            max_total: m("max_total"),
            ..Default::default()
        },
        facilitators: TrustedFacilitators::new(None, &trusted, None).unwrap(),
        auto_top_up: auto,
        payer_hint: true,
    };
    Payer::new(Wallet::from_hex(&fx.payer.secret_hex()).unwrap(), config, Arc::new(FixedClock::new(now)))
}

/// A facilitator's receipt for the payment request in a `facilitator` step.
fn receipt(step: &Value, balance: &str, replayed: bool) -> String {
    let req: payment::PaymentRequest =
        serde_json::from_str(step["facilitator"]["body"].as_str().expect("a payment request")).unwrap();
    let c = Challenge::decode(&req.challenge).unwrap();
    json!({ "token": format!("proof-{}", c.nonce), "tx_hash": format!("0x{}", "ab".repeat(32)),
        "payer": req.payer, "amount": c.amount, "currency": c.currency, "balance": balance,
        "nonce": c.nonce, "paid_at": NOW, "expires_at": NOW + 300, "replayed": replayed })
    .to_string()
}

/// One recorded conversation: the payer's calls, each a list of (input, expected step).
struct Flow<'a> {
    fx: &'a Fixture,
    payer: Payer,
    calls: Vec<Value>,
}

impl<'a> Flow<'a> {
    fn new(fx: &'a Fixture, config: &Value) -> Self {
        Self { fx, payer: flow_payer(fx, config, NOW), calls: Vec::new() }
    }

    /// Run one call: `script` gets the call and a feeder recording each exchange.
    fn call(&mut self, method: &str, url: &str, replayable: bool, script: impl FnOnce(&mut Feeder)) {
        let mut f = Feeder { call: self.payer.call(method, url, replayable).unwrap(), exchanges: Vec::new() };
        script(&mut f);
        drop(f.call);
        self.calls.push(
            json!({ "method": method, "url": url, "replayable": replayable, "exchanges": f.exchanges }),
        );
    }

    fn case(self, name: &str, config: Value) -> Value {
        let _ = self.fx;
        json!({ "name": name, "op": "flow", "now": NOW, "config": config, "calls": self.calls,
            "expect_budget": { "spent": self.payer.spent_total().to_string(),
                "reserved": self.payer.reserved_total().to_string(),
                "in_doubt": self.payer.in_doubt_total().to_string() } })
    }
}

struct Feeder {
    call: Call,
    exchanges: Vec<Value>,
}

impl Feeder {
    fn feed(&mut self, input: Value) -> Value {
        let expect = vlexivo_core::client::vectors::feed(&mut self.call, &input);
        self.exchanges.push(json!({ "input": input, "expect": expect }));
        expect
    }
    fn start(&mut self) -> Value {
        self.feed(json!({ "start": {} }))
    }
    fn respond(&mut self, status: u16, headers: Value, body: Option<&str>) -> Value {
        self.feed(json!({ "response": { "status": status, "headers": headers, "body": body, "url": null } }))
    }
    fn answer(&mut self, status: u16, body: &str) -> Value {
        self.feed(json!({ "answer": { "status": status, "body": body } }))
    }
    fn resume(&mut self) -> Value {
        self.feed(json!({ "resume": {} }))
    }
}

fn flows(fx: &Fixture, challenge: &dyn Fn(&str, &str, &str) -> (String, String)) -> Vec<Value> {
    let api = "http://127.0.0.1:8080";
    let hdr = |enc: &str| json!([["vlexivo-challenge", enc], ["content-type", "application/json"]]);
    let plain = json!([["content-type", "application/json"]]);
    let trusted = json!({ "trusted": [FACILITATOR] });
    let funds_refusal = r#"{"error":"insufficient_funds","message":"insufficient funds","required":"0.01","balance":"0","currency":"usd"}"#;
    let mut out = Vec::new();

    // A paid call from start to finish.
    let mut f = Flow::new(fx, &trusted);
    let (enc, _) = challenge("POST", "/api/v1/inference", "0.01");
    f.call("POST", &format!("{api}/api/v1/inference?model=large"), true, |c| {
        c.start();
        let pay = c.respond(402, hdr(&enc), None);
        c.answer(200, &receipt(&pay, "0.99", false));
        c.resume();
        c.respond(200, plain.clone(), None);
    });
    out.push(f.case("flow: a paid call", trusted.clone()));

    // The challenge only in the body: the flow asks for it; a clear refusal releases the budget.
    let mut f = Flow::new(fx, &trusted);
    let (_, body) = challenge("GET", "/a", "0.01");
    f.call("GET", &format!("{api}/a"), true, |c| {
        c.start();
        c.respond(402, plain.clone(), None);
        c.respond(402, plain.clone(), Some(&body));
        c.answer(402, funds_refusal);
    });
    out.push(f.case("flow: challenge in the body, insufficient funds", trusted.clone()));

    // Not ours to pay: another scheme's 402, a free route, a one-shot body.
    let mut f = Flow::new(fx, &trusted);
    f.call("GET", &format!("{api}/x402"), true, |c| {
        c.start();
        c.respond(402, plain.clone(), None);
        c.respond(402, plain.clone(), Some("{\"x402Version\":2,\"accepts\":[]}"));
    });
    f.call("GET", &format!("{api}/free"), true, |c| {
        c.start();
        c.respond(200, plain.clone(), None);
    });
    let (enc, _) = challenge("POST", "/upload", "0.01");
    f.call("POST", &format!("{api}/upload"), false, |c| {
        c.start();
        c.respond(402, hdr(&enc), None);
    });
    out.push(f.case("flow: responses that are not paid", trusted.clone()));

    // Issue 15 items 6 and 7: a facilitator the payer does not trust; with auto top-up, no
    // balance query or top-up goes there either.
    let auto = json!({ "trusted": [FACILITATOR], "auto_top_up": { "trigger_balance": "1.00", "top_up_amount": "10.00" } });
    let mut f = Flow::new(fx, &auto);
    let evil = fx.paywall_at("http://127.0.0.1:6666");
    let info = RequestInfo::new("GET", "http", CLIENT_ORIGIN.strip_prefix("http://"), "/a");
    let rej = evil
        .challenge(
            &info,
            &Money::parse("0.003", Currency::Usd).unwrap(),
            "per-call",
            NOW,
            &SeededEntropy::new(1),
        )
        .unwrap();
    let evil_enc = rej.headers.iter().find(|(k, _)| *k == "Vlexivo-Challenge").unwrap().1.clone();
    f.call("GET", &format!("{api}/a"), true, |c| {
        c.start();
        c.respond(402, hdr(&evil_enc), None);
    });
    out.push(f.case("flow: an untrusted facilitator, with auto top-up", auto.clone()));

    // The attack of issue 15 item 6: the facilitator charges and answers 502. Sent again, 502
    // again: in doubt, still counted, and the next payment is over the total cap.
    let capped = json!({ "trusted": [FACILITATOR], "max_total": "0.003" });
    let mut f = Flow::new(fx, &capped);
    let (enc_a, _) = challenge("GET", "/a", "0.003");
    let (enc_b, _) = challenge("GET", "/b", "0.003");
    f.call("GET", &format!("{api}/a"), true, |c| {
        c.start();
        c.respond(402, hdr(&enc_a), None);
        c.answer(502, "<html>bad gateway</html>");
        c.feed(json!({ "transport_error": { "sent": true } }));
    });
    f.call("GET", &format!("{api}/b"), true, |c| {
        c.start();
        c.respond(402, hdr(&enc_b), None);
        c.answer(502, "<html>bad gateway</html>");
    });
    out.push(f.case("flow: a 502 after paying leaves the payment in doubt and counted", capped.clone()));

    // Unclear, then the resend tells: paid (replayed), and the call goes on.
    let mut f = Flow::new(fx, &trusted);
    let (enc, _) = challenge("GET", "/a", "0.01");
    f.call("GET", &format!("{api}/a"), true, |c| {
        c.start();
        let pay = c.respond(402, hdr(&enc), None);
        c.feed(json!({ "transport_error": { "sent": true } }));
        c.answer(200, &receipt(&pay, "0.99", true));
        c.resume();
        c.respond(200, plain.clone(), None);
    });
    // Refused at connect: never sent, not charged.
    let (enc, _) = challenge("GET", "/b", "0.01");
    f.call("GET", &format!("{api}/b"), true, |c| {
        c.start();
        c.respond(402, hdr(&enc), None);
        c.feed(json!({ "transport_error": { "sent": false } }));
    });
    out.push(f.case("flow: a lost answer, then the resend's receipt; a refused connection", trusted.clone()));

    // In doubt, then settled by the next call to that resource: its proof serves that call.
    let mut f = Flow::new(fx, &trusted);
    let (enc_1, _) = challenge("GET", "/a", "0.01");
    let (enc_2, _) = challenge("GET", "/a", "0.01");
    let mut first_pay = Value::Null;
    f.call("GET", &format!("{api}/a"), true, |c| {
        c.start();
        first_pay = c.respond(402, hdr(&enc_1), None);
        c.answer(503, "");
        c.answer(503, "");
    });
    f.call("GET", &format!("{api}/a"), true, |c| {
        c.start();
        c.respond(402, hdr(&enc_2), None);
        c.answer(200, &receipt(&first_pay, "0.99", true));
        c.resume();
        c.respond(200, plain.clone(), None);
    });
    out.push(f.case("flow: a payment in doubt is settled by the next call", trusted.clone()));

    // Issue 15 item 9: after the API's 5xx, the next call reuses the proof; a reused proof the
    // API refuses is replaced by a payment.
    let mut f = Flow::new(fx, &trusted);
    let (enc_1, _) = challenge("POST", "/flaky", "0.01");
    let (enc_2, _) = challenge("POST", "/flaky", "0.01");
    let (enc_3, _) = challenge("POST", "/flaky", "0.01");
    f.call("POST", &format!("{api}/flaky"), true, |c| {
        c.start();
        let pay = c.respond(402, hdr(&enc_1), None);
        c.answer(200, &receipt(&pay, "0.99", false));
        c.resume();
        c.respond(500, plain.clone(), None);
    });
    f.call("POST", &format!("{api}/flaky"), true, |c| {
        c.start();
        c.respond(402, hdr(&enc_2), None);
        c.respond(500, plain.clone(), None);
    });
    f.call("POST", &format!("{api}/flaky"), true, |c| {
        c.start();
        c.respond(402, hdr(&enc_2), None);
        let pay = c.respond(402, hdr(&enc_3), None);
        c.answer(200, &receipt(&pay, "0.98", false));
        c.resume();
        c.respond(200, plain.clone(), None);
    });
    // Paid and kept after another 5xx; this time the API says it is spent (409): asked again
    // unpaid, and the fresh challenge paid.
    let (enc_4, _) = challenge("POST", "/flaky", "0.01");
    let (enc_5, _) = challenge("POST", "/flaky", "0.01");
    f.call("POST", &format!("{api}/flaky"), true, |c| {
        c.start();
        let pay = c.respond(402, hdr(&enc_4), None);
        c.answer(200, &receipt(&pay, "0.97", false));
        c.resume();
        c.respond(500, plain.clone(), None);
    });
    f.call("POST", &format!("{api}/flaky"), true, |c| {
        c.start();
        c.respond(402, hdr(&enc_4), None);
        c.respond(409, plain.clone(), None);
        let pay = c.respond(402, hdr(&enc_5), None);
        c.answer(200, &receipt(&pay, "0.96", false));
        c.resume();
        c.respond(200, plain.clone(), None);
    });
    out.push(f.case("flow: a proof is reused after a 5xx, and replaced once refused", trusted.clone()));

    // Auto top-up: the balance, the top-up, the payment; a stale estimate corrected by an
    // insufficient_funds answer tops up and pays the same payment once more.
    let mut f = Flow::new(fx, &auto);
    let (enc_a, _) = challenge("GET", "/a", "0.01");
    let (enc_b, _) = challenge("GET", "/b", "0.01");
    f.call("GET", &format!("{api}/a"), true, |c| {
        c.start();
        c.respond(402, hdr(&enc_a), None);
        c.answer(200, r#"{"address":"x","balance":"0","currency":"usd"}"#);
        let pay =
            c.answer(200, r#"{"address":"x","amount":"10","balance":"10","currency":"usd","tx_hash":"0x1"}"#);
        c.answer(200, &receipt(&pay, "9.99", false));
        c.resume();
        c.respond(200, plain.clone(), None);
    });
    f.call("GET", &format!("{api}/b"), true, |c| {
        c.start();
        c.respond(402, hdr(&enc_b), None);
        c.answer(402, funds_refusal);
        let pay =
            c.answer(200, r#"{"address":"x","amount":"10","balance":"10","currency":"usd","tx_hash":"0x2"}"#);
        c.answer(200, &receipt(&pay, "9.99", false));
        c.resume();
        c.respond(200, plain.clone(), None);
    });
    out.push(f.case("flow: auto top-up, and a stale balance corrected", auto));

    // A facilitator shedding load refuses before it reads the payment (503
    // facilitator_overloaded): not charged, not in doubt, the budget given back, and the next
    // call pays. After a lost answer, the resend's overloaded says nothing about the first send.
    let room = json!({ "trusted": [FACILITATOR], "max_total": "0.02" });
    let overloaded = r#"{"error":"facilitator_overloaded","message":"the facilitator is overloaded"}"#;
    let mut f = Flow::new(fx, &room);
    let (enc_1, _) = challenge("GET", "/a", "0.01");
    let (enc_2, _) = challenge("GET", "/a", "0.01");
    let (enc_3, _) = challenge("GET", "/b", "0.01");
    f.call("GET", &format!("{api}/a"), true, |c| {
        c.start();
        c.respond(402, hdr(&enc_1), None);
        c.answer(503, overloaded);
    });
    f.call("GET", &format!("{api}/a"), true, |c| {
        c.start();
        let pay = c.respond(402, hdr(&enc_2), None);
        c.answer(200, &receipt(&pay, "0.99", false));
        c.resume();
        c.respond(200, plain.clone(), None);
    });
    f.call("GET", &format!("{api}/b"), true, |c| {
        c.start();
        c.respond(402, hdr(&enc_3), None);
        c.feed(json!({ "transport_error": { "sent": true } }));
        c.answer(503, overloaded);
    });
    out.push(
        f.case("flow: a facilitator shedding load charged nothing; after a lost answer, in doubt", room),
    );
    out
}

/// Live mode: a live challenge, the EIP-3009 transfer that pays it (typed data in the JSON form
/// viem's `hashTypedData` and eth-account's `encode_typed_data` take, its hash and the payer's
/// signature), and what the facilitator's `verify_live` answers to good and bad requests.
fn live(rng: &SeededEntropy) -> Value {
    use vlexivo_core::eip3009::{LiveTerms, TYPE_STRING, authorization_nonce};
    use vlexivo_core::wallet::Address;
    let secret = generate_secret(Mode::Live, rng);
    let keys = ProviderKeys::from_secret(&secret).unwrap();
    let payer = Wallet::generate(rng);
    let stranger = Wallet::generate(rng);
    let terms = LiveTerms {
        network: "eip155:31337".into(),
        asset: Address::parse("0x5FbDB2315678afecb367f032d93F642f64180aa3").unwrap(),
        asset_name: "USD Coin".into(),
        asset_version: "2".into(),
        pay_to: Address::parse("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").unwrap(),
    };
    let mut cfg = PaywallConfig::new(&secret);
    cfg.facilitator_url = FACILITATOR.into();
    cfg.origin = Some(ORIGIN.into());
    cfg.live = Some(terms.clone());
    let pw = Paywall::new(cfg).unwrap();
    let price = Money::parse("0.01", Currency::Usd).unwrap();
    let req = RequestInfo::new("POST", "https", Some("api.example.com"), "/api/v1/inference");
    let mk = || {
        let r = pw.challenge(&req, &price, "per-call", NOW, rng).unwrap();
        r.headers.iter().find(|(k, _)| *k == "Vlexivo-Challenge").unwrap().1.clone()
    };
    let enc = mk();
    let c = Challenge::decode(&enc).unwrap();
    let good = payment::sign(&c, &enc, &payer).unwrap();
    let (auth, domain) = payment::transfer_authorization(
        &c,
        payer.address(),
        good.valid_after.unwrap(),
        good.valid_before.unwrap(),
    )
    .unwrap();
    let typed_data = json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
            "TransferWithAuthorization": [
                {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"}],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": { "name": domain.name, "version": domain.version, "chainId": domain.chain_id,
            "verifyingContract": domain.verifying_contract.to_checksum() },
        "message": { "from": auth.from.to_checksum(), "to": auth.to.to_checksum(),
            "value": auth.value.to_string(), "validAfter": auth.valid_after.to_string(),
            "validBefore": auth.valid_before.to_string(), "nonce": format!("0x{}", hex::encode(auth.nonce)) },
    });
    let resign = |r: &payment::PaymentRequest, after: u64, before: u64, chain: Option<u64>| {
        let (a, mut d) = payment::transfer_authorization(&c, payer.address(), after, before).unwrap();
        if let Some(id) = chain {
            d.chain_id = id;
        }
        let mut r = r.clone();
        r.valid_after = Some(after);
        r.valid_before = Some(before);
        r.signature = a.sign(&d, &payer).unwrap();
        r
    };
    let mut other_terms = terms.clone();
    other_terms.pay_to = stranger.address();
    let mut someone_else = good.clone();
    someone_else.payer = stranger.address().to_checksum();
    let exp = c.exp;
    let cases: Vec<Value> = [
        ("valid", good.clone(), &terms, NOW + 1),
        ("valid with a shorter window", resign(&good, NOW - 60, NOW + 120, None), &terms, NOW + 1),
        ("not valid yet", resign(&good, NOW + 60, exp, None), &terms, NOW + 1),
        ("valid beyond the challenge", resign(&good, 0, exp + 1, None), &terms, NOW + 1),
        ("expiring before it can be settled", resign(&good, 0, NOW + 5, None), &terms, NOW + 1),
        ("signed for another chain id", resign(&good, 0, exp, Some(1)), &terms, NOW + 1),
        ("payer claims another wallet", someone_else, &terms, NOW + 1),
        ("the facilitator pays another address for this provider", good.clone(), &other_terms, NOW + 1),
        ("expired challenge", good.clone(), &terms, exp + 6),
    ]
    .into_iter()
    .map(|(name, r, expected, now)| {
        let result = payment::decode(&r)
            .and_then(|ch| payment::verify_live(&r, ch, &keys.challenge_mac, expected, now));
        json!({ "name": name, "request": r, "now": now, "expected_pay_to": expected.pay_to.to_checksum(),
            "expect": err_or(result, |v| json!({ "payer": v.payment.payer.to_checksum(),
                "amount": v.payment.price.to_string(), "value": v.authorization.value.to_string() })) })
    })
    .collect();
    json!({
        "kind": "live",
        "description": "Live mode (EIP-3009). `authorization`: the transfer paying `challenge` (nonce = keccak256(\"vlexivo-eip3009-nonce-v1\\n\" || account || \"\\n\" || challenge nonce)), as EIP-712 typed data, its domain separator and signing hash, and the payer's deterministic signature. `cases`: payment::verify_live with the challenge MAC key from api_secret, the terms (network, asset, name, version) of `terms` and pay_to `expected_pay_to`, at `now`.",
        "api_secret": secret,
        "payer_key": payer.secret_hex(),
        "terms": { "network": terms.network, "asset": terms.asset.to_checksum(), "asset_name": terms.asset_name,
            "asset_version": terms.asset_version, "pay_to": terms.pay_to.to_checksum() },
        "authorization": {
            "challenge": enc,
            "type_string": TYPE_STRING,
            "nonce": format!("0x{}", hex::encode(authorization_nonce(&c.account, &c.nonce))),
            "typed_data": typed_data,
            "domain_separator": format!("0x{}", hex::encode(domain.separator())),
            "signing_hash": format!("0x{}", hex::encode(auth.signing_hash(&domain))),
            "signature": good.signature,
            "request": good,
        },
        "cases": cases,
    })
}
