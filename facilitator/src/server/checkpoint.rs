//! Signed checkpoints of the ledger's hash-chain heads (`GET /v1/ledger/checkpoint`).
//!
//! The hash chain makes the ledger tamper-evident only against a head kept somewhere the
//! database is not: whoever can write the database can rewrite a record and recompute every
//! hash after it. A checkpoint is the facilitator's EdDSA signature over every chain's head
//! (`stream`, `seq`, `hash`) at one moment, a compact JWS under the key published in the JWKS.
//! A provider or payer who keeps one can later check, with `vlexivo ledger verify --checkpoint`,
//! that the ledger still holds those exact heads (so nothing at or before them changed) and that
//! a receipt's transaction is among them. A forged checkpoint needs the signing key, which the
//! database holds only sealed under the master key (`keys`).

use super::ledger::GENESIS_HASH;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use vlexivo_core::token::Ed25519Key;
use vlexivo_core::{Error, Result};

/// The JOSE `typ` of a checkpoint, so a proof token can never pass for one (or the reverse).
pub const CHECKPOINT_TYP: &str = "vlexivo-checkpoint+jwt";

/// The end of one chain: its last transaction's sequence number and hash. On SQLite there is
/// one chain and no `stream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainHead {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<i64>,
    pub seq: i64,
    pub hash: String,
}

/// What a checkpoint signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointClaims {
    /// The facilitator's issuer URL.
    pub iss: String,
    /// When it was signed (Unix seconds).
    pub iat: u64,
    /// Every chain's head, by stream; empty for an empty ledger.
    pub heads: Vec<ChainHead>,
}

/// `GET /v1/ledger/checkpoint`: the signed checkpoint and, for reading, what it says.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    /// The compact JWS (EdDSA, `typ` vlexivo-checkpoint+jwt): keep this.
    pub checkpoint: String,
    /// The key that signed it (in `/.well-known/jwks.json`).
    pub kid: String,
    /// The claims, decoded for reading (the JWS is what counts): the issuer URL, ...
    pub iss: String,
    /// ... when it was signed (Unix seconds) ...
    pub iat: u64,
    /// ... and every chain's head.
    pub heads: Vec<ChainHead>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    kid: String,
    typ: String,
}

/// Sign `claims` with the facilitator's key.
pub fn sign(key: &Ed25519Key, claims: CheckpointClaims) -> Result<Checkpoint> {
    let header = Header { alg: "EdDSA".into(), kid: key.kid().into(), typ: CHECKPOINT_TYP.into() };
    let signed = format!("{}.{}", b64_json(&header), b64_json(&claims));
    let pair = aws_lc_rs::signature::Ed25519KeyPair::from_seed_and_public_key(&key.seed(), &key.public_key())
        .map_err(|_| Error::Internal("checkpoint key rejected".into()))?;
    let sig = pair.sign(signed.as_bytes());
    Ok(Checkpoint {
        checkpoint: format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())),
        kid: key.kid().into(),
        iss: claims.iss,
        iat: claims.iat,
        heads: claims.heads,
    })
}

fn b64_json(v: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("checkpoint JSON serializes"))
}

/// Why a kept checkpoint was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointError {
    /// Not a checkpoint JWS (or its JSON envelope).
    Malformed(&'static str),
    /// No key of this kid among the trusted keys.
    UnknownKey(String),
    /// The signature does not verify.
    BadSignature,
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "not a Vlexivo checkpoint: {why}"),
            Self::UnknownKey(kid) => {
                write!(f, "checkpoint signed by key {kid:?}, which is not among the trusted keys")
            }
            Self::BadSignature => f.write_str("the checkpoint's signature does not verify"),
        }
    }
}

/// Read a kept checkpoint: the JSON answer of `GET /v1/ledger/checkpoint`, or the bare JWS.
pub fn parse_kept(text: &str) -> std::result::Result<String, CheckpointError> {
    let text = text.trim();
    if text.starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|_| CheckpointError::Malformed("the file is not JSON"))?;
        v.get("checkpoint")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or(CheckpointError::Malformed("no \"checkpoint\" field"))
    } else {
        Ok(text.to_string())
    }
}

/// Verify a checkpoint JWS under one of `keys` (kid, raw Ed25519 public key) and return its claims.
pub fn verify(
    jws: &str,
    keys: &[(String, [u8; 32])],
) -> std::result::Result<CheckpointClaims, CheckpointError> {
    use CheckpointError::Malformed;
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(Malformed("a JWS has three dot-separated parts"));
    };
    let b64 = |x: &str| URL_SAFE_NO_PAD.decode(x).map_err(|_| Malformed("a part is not base64url"));
    let header: Header = serde_json::from_slice(&b64(h)?).map_err(|_| Malformed("bad header"))?;
    if header.alg != "EdDSA" || header.typ != CHECKPOINT_TYP {
        return Err(Malformed("the header is not an EdDSA checkpoint's"));
    }
    let (_, public) = keys
        .iter()
        .find(|(kid, _)| *kid == header.kid)
        .ok_or_else(|| CheckpointError::UnknownKey(header.kid.clone()))?;
    let signed = &jws[..h.len() + 1 + p.len()];
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public)
        .verify(signed.as_bytes(), &b64(s)?)
        .map_err(|_| CheckpointError::BadSignature)?;
    let claims: CheckpointClaims = serde_json::from_slice(&b64(p)?).map_err(|_| Malformed("bad claims"))?;
    if claims.heads.iter().any(|h| h.seq < 0 || (h.seq == 0 && h.hash != GENESIS_HASH)) {
        return Err(Malformed("a head has an impossible sequence number"));
    }
    Ok(claims)
}

/// The (kid, public key) pairs of a JWKS document (the Ed25519 keys; others are skipped).
pub fn jwks_keys(jwks: &str) -> std::result::Result<Vec<(String, [u8; 32])>, CheckpointError> {
    let v: serde_json::Value =
        serde_json::from_str(jwks).map_err(|_| CheckpointError::Malformed("the JWKS is not JSON"))?;
    let keys = v
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or(CheckpointError::Malformed("the JWKS has no keys"))?;
    Ok(keys
        .iter()
        .filter(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519")
        .filter_map(|k| {
            let kid = k["kid"].as_str()?.to_string();
            let x: [u8; 32] = URL_SAFE_NO_PAD.decode(k["x"].as_str()?).ok()?.try_into().ok()?;
            Some((kid, x))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vlexivo_core::env::SeededEntropy;

    fn claims() -> CheckpointClaims {
        CheckpointClaims {
            iss: "https://f.example".into(),
            iat: 1_700_000_000,
            heads: vec![ChainHead { stream: Some(1), seq: 3, hash: format!("0x{}", "ab".repeat(32)) }],
        }
    }

    #[test]
    fn signs_and_verifies_under_the_jwks() {
        let key = Ed25519Key::generate(&SeededEntropy::new(7));
        let cp = sign(&key, claims()).unwrap();
        let jwks = serde_json::to_string(&vlexivo_core::token::jwks(&[&key])).unwrap();
        let keys = jwks_keys(&jwks).unwrap();
        assert_eq!(verify(&cp.checkpoint, &keys).unwrap(), claims());
        let kept = serde_json::to_string(&cp).unwrap();
        assert_eq!(parse_kept(&kept).unwrap(), cp.checkpoint);
    }

    #[test]
    fn refuses_other_keys_changed_claims_and_proof_tokens() {
        let key = Ed25519Key::generate(&SeededEntropy::new(7));
        let other = Ed25519Key::generate(&SeededEntropy::new(8));
        let cp = sign(&key, claims()).unwrap();
        let keys = vec![(key.kid().to_string(), key.public_key())];
        // Another key under the same kid: the signature fails.
        let impostor = vec![(key.kid().to_string(), other.public_key())];
        assert_eq!(verify(&cp.checkpoint, &impostor), Err(CheckpointError::BadSignature));
        assert!(matches!(
            verify(&sign(&other, claims()).unwrap().checkpoint, &keys),
            Err(CheckpointError::UnknownKey(_))
        ));
        // A head moved back: the payload no longer matches the signature.
        let mut forged = claims();
        forged.heads[0].seq = 2;
        let parts: Vec<&str> = cp.checkpoint.split('.').collect();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
        assert_eq!(verify(&tampered, &keys), Err(CheckpointError::BadSignature));
        // A proof token signed by the same key is not a checkpoint.
        let issuer =
            vlexivo_core::token::TokenIssuer::new(vlexivo_core::token::SigningKey::EdDsa(key.clone()))
                .unwrap();
        let token = issuer
            .issue(&vlexivo_core::token::ProofClaims {
                jti: "n".into(),
                iss: "x".into(),
                aud: "acct".into(),
                sub: "0x".into(),
                txh: "0x".into(),
                amt: "1".into(),
                cur: "usd".into(),
                res: "GET /".into(),
                bdy: None,
                mode: "sandbox".into(),
                net: "sandbox".into(),
                iat: 1,
                exp: 2,
            })
            .unwrap();
        assert!(matches!(verify(&token, &keys), Err(CheckpointError::Malformed(_))));
    }
}
