//! JSON bodies of the facilitator HTTP API (`docs/protocol.md` §8), shared by the service and
//! the CLI. `POST /v1/payments` uses `vlexivo_core::payment::{PaymentRequest, PaymentReceipt}`.

use serde::{Deserialize, Serialize};

pub use vlexivo_core::api_bodies::{CreateProviderRequest, RotateRequest, TopUpRequest};

/// A live provider's settlement terms: what its paywall puts in challenges (`VLX_NETWORK`,
/// `VLX_ASSET`, `VLX_ASSET_NAME`, `VLX_ASSET_VERSION`, `VLX_PAY_TO`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LiveTermsBody {
    pub network: String,
    pub asset: String,
    pub asset_name: String,
    pub asset_version: String,
    pub pay_to: String,
}

impl From<&vlexivo_core::eip3009::LiveTerms> for LiveTermsBody {
    fn from(t: &vlexivo_core::eip3009::LiveTerms) -> Self {
        Self {
            network: t.network.clone(),
            asset: t.asset.to_checksum(),
            asset_name: t.asset_name.clone(),
            asset_version: t.asset_version.clone(),
            pay_to: t.pay_to.to_checksum(),
        }
    }
}

impl LiveTermsBody {
    /// As core's terms (for a paywall's `PaywallConfig::live`).
    pub fn to_terms(&self) -> vlexivo_core::Result<vlexivo_core::eip3009::LiveTerms> {
        use vlexivo_core::wallet::Address;
        Ok(vlexivo_core::eip3009::LiveTerms {
            network: self.network.clone(),
            asset: Address::parse(&self.asset)?,
            asset_name: self.asset_name.clone(),
            asset_version: self.asset_version.clone(),
            pay_to: Address::parse(&self.pay_to)?,
        })
    }

    /// The environment a paywall reads them from, as `NAME=value` lines.
    pub fn env_lines(&self) -> String {
        use vlexivo_core::envvars::{ASSET, ASSET_NAME, ASSET_VERSION, NETWORK, PAY_TO};
        format!(
            "{}={}\n{}={}\n{}={}\n{}={}\n{}={}",
            NETWORK.name,
            self.network,
            ASSET.name,
            self.asset,
            ASSET_NAME.name,
            self.asset_name,
            ASSET_VERSION.name,
            self.asset_version,
            PAY_TO.name,
            self.pay_to
        )
    }
}

/// `POST /v1/providers` answer (201). The secret is shown once and never stored.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderCreated {
    pub account: String,
    pub api_secret: String,
    pub publishable_key: String,
    pub mode: String,
    pub token_alg: String,
    /// Live providers: the terms to configure the paywall with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<LiveTermsBody>,
}

/// `POST /v1/providers/me/rotate` answer (201): the new secret, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderRotated {
    /// The account (unchanged: balance and payments stay with it).
    pub account: String,
    pub api_secret: String,
    /// Names the id the new secret derives, which its challenges carry.
    pub publishable_key: String,
    pub mode: String,
    pub token_alg: String,
    /// When the previous secrets stop working (Unix seconds).
    pub previous_secrets_retire_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Revenue {
    pub currency: String,
    pub total: String,
    pub count: u64,
}

/// `GET /v1/providers/me` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderInfo {
    pub account: String,
    pub mode: String,
    pub token_alg: String,
    #[serde(default)]
    pub publishable_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub revenue: Revenue,
    /// Live providers: their settlement terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<LiveTermsBody>,
}

/// One row of `GET /v1/providers/me/payments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentRecord {
    pub nonce: String,
    pub payer: String,
    pub amount: String,
    pub currency: String,
    pub tx_hash: String,
    pub resource: String,
    pub paid_at: u64,
    /// Live payments: `submitted`, `confirmed` or `failed` (with `failure`), and where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Live payments relayed in a batch: the payment's call in that transaction's Multicall3
    /// `aggregate3` (its `tx_hash` is the batch's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_index: Option<u32>,
    /// Live payments: how many times a reorg undid the payment's confirmation (it was then
    /// followed again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorgs: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PaymentList {
    pub payments: Vec<PaymentRecord>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// `GET /v1/wallets/{address}` answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WalletBalance {
    pub address: String,
    pub balance: String,
    pub currency: String,
}

pub use vlexivo_core::payment::TopUpReceipt;

/// `GET /readyz` answer: `status` is `ready` (200) or `unavailable` (503, with `reason`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every error answer: `{"error": code, "message": text}`, plus the amounts for
/// `insufficient_funds`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}
