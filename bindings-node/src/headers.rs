//! The protocol's header names, from core: the TypeScript layer reads them here instead of
//! spelling them itself.

use napi_derive::napi;
use vlexivo_core::headers;

/// Header names as core spells them (case-insensitive on the wire).
#[napi(object)]
pub struct HeaderNames {
    /// On a 402: the challenge.
    pub challenge: String,
    /// On the paid retry: the proof token.
    pub proof: String,
    /// On the paid response: the receipt.
    pub receipt: String,
    /// On the unpaid request: the payer's address, a hint for pricing by payer.
    pub payer: String,
    /// The `Access-Control-Expose-Headers` value for cross-origin responses.
    pub expose: String,
}

#[napi]
pub fn header_names() -> HeaderNames {
    HeaderNames {
        challenge: headers::CHALLENGE.into(),
        proof: headers::PROOF.into(),
        receipt: headers::RECEIPT.into(),
        payer: headers::PAYER.into(),
        expose: headers::EXPOSE.into(),
    }
}
