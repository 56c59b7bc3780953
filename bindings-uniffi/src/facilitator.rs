//! The facilitator's HTTP API (docs/protocol.md section 8), as much of it as a payer uses:
//! pay, read a balance, top up (sandbox faucet). Only I/O and JSON here; what an answer
//! means is core's `Payer::finish` and `error_from_body`.

use serde::Deserialize;
use std::time::Duration;
use vlexivo_core::Error;
use vlexivo_core::client::{MAX_RESPONSE_BODY, error_from_body};

/// Generous for a payment (one DB transaction on the facilitator), short enough that a dead
/// facilitator does not hang an app's request.
const TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
}

#[derive(Debug, Deserialize)]
pub(crate) struct WalletInfo {
    pub balance: String,
    #[serde(default)]
    pub currency: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TopUpReceipt {
    pub amount: String,
    pub balance: String,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub tx_hash: Option<String>,
}

impl Http {
    pub fn new(tls: &vlexivo_client::tls::TlsConfig) -> Result<Self, Error> {
        let client = tls
            .client_builder()
            .timeout(TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            // A signed payment is for one facilitator: never follow it elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vlexivo-uniffi/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {}", vlexivo_client::tls::describe(&e))))?;
        Ok(Self { client })
    }

    /// POST the prepared JSON; returns the raw answer for `Payer::finish`.
    pub async fn post_json(&self, url: &str, body: String) -> Result<(u16, Vec<u8>), Error> {
        let req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(body);
        read_capped(req.send().await.map_err(unavailable)?).await
    }

    /// `GET /v1/wallets/{address}`.
    pub async fn wallet(&self, facilitator: &str, address: &str) -> Result<WalletInfo, Error> {
        let url = format!("{facilitator}/v1/wallets/{address}");
        let resp = self.client.get(&url).header("accept", "application/json").send().await;
        let (status, body) = read_capped(resp.map_err(unavailable)?).await?;
        decode_ok(status, &body)
    }

    /// `POST /v1/wallets/{address}/topup {"amount": …}` (the sandbox faucet).
    pub async fn top_up(
        &self,
        facilitator: &str,
        address: &str,
        amount: &str,
    ) -> Result<TopUpReceipt, Error> {
        let url = format!("{facilitator}/v1/wallets/{address}/topup");
        let body = serde_json::json!({ "amount": amount }).to_string();
        let (status, body) = self.post_json(&url, body).await?;
        decode_ok(status, &body)
    }
}

fn unavailable(e: reqwest::Error) -> Error {
    // Names the facilitator's origin, never a body; TLS failures say what is wrong.
    Error::FacilitatorUnavailable(vlexivo_client::tls::describe(&e))
}

/// Read at most `MAX_RESPONSE_BODY` bytes: a hostile or broken server cannot make the app
/// buffer an unbounded body.
async fn read_capped(mut resp: reqwest::Response) -> Result<(u16, Vec<u8>), Error> {
    let status = resp.status().as_u16();
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(unavailable)? {
        if buf.len() + chunk.len() > MAX_RESPONSE_BODY {
            return Err(Error::FacilitatorError {
                status,
                code: "response_too_large".into(),
                message: format!("facilitator answer is larger than {MAX_RESPONSE_BODY} bytes"),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((status, buf))
}

fn decode_ok<T: serde::de::DeserializeOwned>(status: u16, body: &[u8]) -> Result<T, Error> {
    if !(200..300).contains(&status) {
        return Err(error_from_body(status, body));
    }
    serde_json::from_slice(body).map_err(|_| Error::FacilitatorError {
        status,
        code: "bad_response".into(),
        message: "facilitator answered with unexpected JSON".into(),
    })
}
