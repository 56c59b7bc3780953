//! The facilitator's HTTP for the payer flow: one request as core's flow describes it, sent
//! without following redirects, its answer read up to `MAX_RESPONSE_BODY` bytes. What an
//! answer means is core's.

use std::time::Duration;
use vlexivo_core::Error;
use vlexivo_core::client::{FacilitatorRequest, MAX_RESPONSE_BODY};

/// Generous for a payment (one DB transaction on the facilitator), short enough that a dead
/// facilitator does not hang an app's request.
const TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
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

    /// `(status, body)`, or `(sent, reason)` when no whole answer came back (`sent`: the
    /// request may have reached the facilitator).
    pub async fn send(&self, req: &FacilitatorRequest) -> Result<(u16, Vec<u8>), (bool, String)> {
        let fail = |e: reqwest::Error| (!e.is_connect(), vlexivo_client::tls::describe(&e));
        let mut rb = if req.method == "GET" { self.client.get(&req.url) } else { self.client.post(&req.url) };
        rb = rb.header("accept", "application/json");
        if let Some(b) = &req.body {
            rb = rb.header("content-type", "application/json").body(b.clone());
        }
        let mut resp = rb.send().await.map_err(fail)?;
        let status = resp.status().as_u16();
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| (true, vlexivo_client::tls::describe(&e)))? {
            if buf.len() + chunk.len() > MAX_RESPONSE_BODY {
                return Err((true, format!("answer larger than {MAX_RESPONSE_BODY} bytes")));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok((status, buf))
    }

    /// A wallet operation: the answer, or `facilitator_unavailable` naming the facilitator.
    pub async fn wallet(&self, req: &FacilitatorRequest) -> Result<(u16, Vec<u8>), Error> {
        self.send(req).await.map_err(|(_, why)| Error::FacilitatorUnavailable(why))
    }
}
